"""CLI: adtarget size / overlap / export / snapshots list|rollback, against a real data dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from tests.audience.conftest import build, population
from typer.testing import CliRunner

from adtarget.audience.store import SnapshotStore
from adtarget.cli.audience import register
from adtarget.settings import Settings, get_settings

runner = CliRunner()


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    yield app
    get_settings.cache_clear()


@pytest.fixture
def users(settings: Settings) -> list[dict]:
    store = SnapshotStore(settings.snapshots_dir)
    build(store, population(40, seed=1))
    users = population(400, seed=8)
    build(store, users)
    return users


def test_size_json(cli: typer.Typer, users: list[dict]) -> None:
    r = runner.invoke(cli, ["size", "not premium = true", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out == {
        "count": sum(1 for u in users if u.get("premium") is not True),
        "snapshot": "v000002",
    }
    human = runner.invoke(cli, ["size", "not premium = true"])
    assert human.exit_code == 0 and "users (snapshot v000002)" in human.stdout


def test_size_below_threshold_hides_count(cli: typer.Typer, users: list[dict]) -> None:
    rule = 'country = "US" and device = "web" and premium = true'
    assert (
        0
        < sum(
            1
            for u in users
            if u.get("country") == "US" and u.get("device") == "web" and u.get("premium") is True
        )
        < 100
    )
    r = runner.invoke(cli, ["size", rule, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["count"] is None and out["below_threshold"] is True
    human = runner.invoke(cli, ["size", rule])
    assert "below the minimum audience size of 100" in human.stdout
    assert "ADTARGET_MIN_AUDIENCE_SIZE" in human.stdout  # the setting that decides it
    r = runner.invoke(cli, ["export", rule, "--out", "x.csv"])
    assert r.exit_code == 2 and "below the minimum size" in r.stderr


def test_size_bad_rule_exits_2_with_message(cli: typer.Typer, users: list[dict]) -> None:
    r = runner.invoke(cli, ["size", 'cuntry = "US"', "--json"])
    assert r.exit_code == 2
    assert "cuntry" in r.stderr and r.stdout == ""


def test_size_without_snapshot_fails(cli: typer.Typer) -> None:
    r = runner.invoke(cli, ["size", "premium = true"])
    assert r.exit_code == 1 and "no audience snapshot" in r.stderr


def test_overlap_table_and_json(cli: typer.Typer, users: list[dict]) -> None:
    r = runner.invoke(cli, ["overlap", "premium = false", "age > 1", "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)["matrix"]
    assert len(m) == 2 and m[0][1] == m[1][0]
    table = runner.invoke(cli, ["overlap", "premium = false", "age > 1"])
    assert table.exit_code == 0 and "overlap" in table.stdout


def test_export_parquet(cli: typer.Typer, users: list[dict], tmp_path: Path) -> None:
    out = tmp_path / "ids.parquet"
    r = runner.invoke(
        cli, ["export", "not premium = true", "--out", str(out), "--format", "parquet"]
    )
    assert r.exit_code == 0, r.output
    want = {u["user_id"] for u in users if u.get("premium") is not True}
    assert set(pq.read_table(out).column("user_id").to_pylist()) == want
    bad = runner.invoke(cli, ["export", "age > 1", "--out", str(out), "--format", "xml"])
    assert bad.exit_code == 2


def test_snapshots_list_and_rollback(cli: typer.Typer, users: list[dict]) -> None:
    r = runner.invoke(cli, ["snapshots", "list", "--json"])
    assert r.exit_code == 0
    body = json.loads(r.stdout)
    assert body["current"] == "v000002" and len(body["snapshots"]) == 2
    r = runner.invoke(cli, ["snapshots", "rollback", "v000001"])
    assert r.exit_code == 0 and "v000001" in r.stdout
    r = runner.invoke(cli, ["size", "age > -100", "--json"])
    assert json.loads(r.stdout)["snapshot"] == "v000001"
    r = runner.invoke(cli, ["snapshots", "rollback", "v000042"])
    assert r.exit_code == 1 and "v000042" in r.stderr
    assert runner.invoke(cli, ["snapshots", "list"]).exit_code == 0
