"""``adtarget ingest`` through Typer's CliRunner: JSON output, exit codes, stderr."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from adtarget.cli import ingest as ingest_cli
from adtarget.cli.main import app as main_app
from adtarget.settings import get_settings

from .conftest import write_csv


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.delenv("ADTARGET_DATA_DIR", raising=False)
    monkeypatch.setenv("ADTARGET_ACTOR", "cli-test")
    names = {
        c.name or (c.callback.__name__ if c.callback else "") for c in main_app.registered_commands
    }
    if "ingest" not in names:
        ingest_cli.register(main_app)  # until the lead wires it into cli/main.py
    yield main_app
    get_settings.cache_clear()


def test_ingest_json_then_segment_then_failure(app: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    schema = tmp_path / "schema.json"
    schema.write_text('{"country": "category"}')
    pop = write_csv(tmp_path / "pop.csv", "user_id,country", "u1,US", "u2,CA")
    res = runner.invoke(
        app, ["--data-dir", str(data), "ingest", str(pop), "--schema", str(schema), "--json"]
    )
    assert res.exit_code == 0, res.output
    job = json.loads(res.stdout)
    assert job["status"] == "succeeded" and job["rows_accepted"] == 2 and job["snapshot"]
    assert job["actor"] == "cli-test"

    seg = write_csv(tmp_path / "seg.csv", "user_id", "u1")
    res = runner.invoke(
        app,
        [
            "--data-dir",
            str(data),
            "ingest",
            str(seg),
            "--mode",
            "segment",
            "--segment",
            "vip",
            "--ttl",
            "60",
            "--dry-run",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "dry run" in res.stdout and "segment vip: 0 -> 1" in res.stdout

    bad = write_csv(tmp_path / "bad.csv", "user_id,country", "u1,US", ",CA")
    res = runner.invoke(app, ["--data-dir", str(data), "ingest", str(bad), "--json"])
    assert res.exit_code == 1
    assert json.loads(res.stdout)["status"] == "failed"
    assert "1 of 2 rows rejected" in res.stderr


def test_ingest_bad_arguments_exit_nonzero(app: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        app, ["--data-dir", str(tmp_path / "d"), "ingest", str(tmp_path / "missing.csv")]
    )
    assert res.exit_code == 2 and "does not exist" in res.stderr
    pop = write_csv(tmp_path / "pop.csv", "user_id", "u1")
    res = runner.invoke(
        app, ["--data-dir", str(tmp_path / "d"), "ingest", str(pop), "--mode", "segment"]
    )
    assert res.exit_code == 2 and "segment name" in res.stderr
