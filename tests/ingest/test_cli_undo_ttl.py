"""Through the real CLI: ``adtarget undo``/``redo`` of a published upload, and membership TTL
expiry seen alike by sizes, exports and decisions (the decision engine's profile lookup)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adtarget.audience.store import SnapshotStore
from adtarget.cli import ingest as ingest_cli
from adtarget.cli.main import app as main_app
from adtarget.decision.profiles import SnapshotProfileStore
from adtarget.rules.ast import SEGMENTS_FIELD
from adtarget.rules.eval_python import matches
from adtarget.rules.parse import parse
from adtarget.settings import get_settings

from .conftest import write_csv

RULES = ['country in ("US")', "age between 20 and 35", 'not country in ("CA")']


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Invoke ``adtarget --data-dir D ...``; returns (exit code, stdout, stderr)."""
    monkeypatch.delenv("ADTARGET_DATA_DIR", raising=False)
    monkeypatch.setenv("ADTARGET_ACTOR", "cli-test")
    monkeypatch.setenv("ADTARGET_MIN_AUDIENCE_SIZE", "0")
    names = {
        c.name or (c.callback.__name__ if c.callback else "") for c in main_app.registered_commands
    }
    if "ingest" not in names:
        ingest_cli.register(main_app)
    runner, data = CliRunner(), tmp_path / "data"

    def run(*args: str) -> tuple[int, str, str]:
        res = runner.invoke(main_app, ["--data-dir", str(data), *args])
        return res.exit_code, res.stdout, res.stderr

    yield run
    get_settings.cache_clear()


def _sizes(cli: Any) -> list[int]:
    out = []
    for rule in RULES:
        code, stdout, stderr = cli("size", rule, "--json")
        assert code == 0, stderr
        out.append(json.loads(stdout)["count"])
    return out


def test_adtarget_undo_restores_previous_audience_and_redo_reapplies(
    cli: Any, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"country": "category", "age": "number"}')
    pop = write_csv(
        tmp_path / "pop.csv", "user_id,country,age", "a,US,30", "b,CA,60", "c,US,21", "d,FR,"
    )
    code, stdout, stderr = cli("ingest", str(pop), "--schema", str(schema), "--json")
    assert code == 0, stderr
    v1 = json.loads(stdout)["snapshot"]
    before = _sizes(cli)
    assert before == [2, 2, 3]
    change = write_csv(tmp_path / "up.csv", "user_id,country,age", "a,CA,70", "e,US,25", "f,US,40")
    code, stdout, stderr = cli("ingest", str(change), "--mode", "upsert", "--json")
    assert code == 0, stderr
    v2 = json.loads(stdout)["snapshot"]
    after = _sizes(cli)
    assert after == [3, 2, 4]
    store = SnapshotStore(get_settings().snapshots_dir)
    assert store.current().features_of("a") == {
        "country": "CA",
        "age": 70,  # type: ignore[union-attr]
        SEGMENTS_FIELD: frozenset(),
    }

    code, stdout, stderr = cli("undo", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["undone"]["description"].startswith("publish upload")
    assert store.current_version() == v1 and _sizes(cli) == before
    snap = store.current()
    assert snap is not None and snap.num_users == 4 and snap.ordinal_of("e") is None
    assert snap.features_of("a") == {"country": "US", "age": 30, SEGMENTS_FIELD: frozenset()}

    code, stdout, stderr = cli("redo", "--json")
    assert code == 0, stderr
    assert store.current_version() == v2 and _sizes(cli) == after
    assert store.current().features_of("e") is not None  # type: ignore[union-attr]


def test_expired_members_leave_sizes_exports_and_decisions(cli: Any, tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"country": "category"}')
    pop = write_csv(tmp_path / "pop.csv", "user_id,country", "u1,US", "u2,CA", "u3,US")
    assert cli("ingest", str(pop), "--schema", str(schema), "--json")[0] == 0
    keep = write_csv(tmp_path / "keep.csv", "user_id", "u1", "u2")
    code, _, stderr = cli("ingest", str(keep), "--mode", "segment", "--segment", "fans")
    assert code == 0, stderr
    short = write_csv(tmp_path / "short.csv", "user_id", "u3")
    code, stdout, stderr = cli(
        "ingest", str(short), "--mode", "segment", "--segment", "brief", "--ttl", "2", "--json"
    )
    assert code == 0, stderr
    expires_at = json.loads(stdout)["report"]["segment"]["expires_at"]
    profiles = SnapshotProfileStore(SnapshotStore(get_settings().snapshots_dir))
    rule = 'segment("brief") or segment("fans")'

    def observed() -> tuple[int, list[str], bool]:
        code, stdout, stderr = cli("size", rule, "--json")
        assert code == 0, stderr
        out = tmp_path / "export.csv"
        code, _, stderr = cli("export", rule, "--out", str(out), "--json")
        assert code == 0, stderr
        ids = sorted(out.read_text().split()[1:])
        feats = profiles.get("u3")
        assert feats is not None
        return json.loads(stdout)["count"], ids, matches(parse(rule), feats)

    live = observed()
    if time.time() < expires_at:  # (a very slow machine may already be past the TTL here)
        assert live == (3, ['"u1"', '"u2"', '"u3"'], True)
    while time.time() <= expires_at + 0.01:
        time.sleep(0.05)
    assert observed() == (2, ['"u1"', '"u2"'], False)
    feats = profiles.get("u3")
    assert feats is not None and "brief" not in feats[SEGMENTS_FIELD]
