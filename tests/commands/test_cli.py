"""``adtarget undo | redo | history`` through Typer's CliRunner, on a real SQLite catalog."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from adtarget.catalog.db import open_catalog
from adtarget.cli import catalog as cli_catalog
from adtarget.cli import commands as cli_commands
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.settings import Settings, get_settings


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ADTARGET_ACTOR", "cli:tester")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    cli_commands.register(app)
    cli_catalog.register(app)
    return app


def test_default_actor_is_os_user() -> None:
    assert cli_commands.cli_actor(Settings(actor=None)) == f"cli:{getpass.getuser()}"
    assert cli_commands.cli_actor(Settings(actor="ops-bot")) == "ops-bot"


def test_undo_redo_history(app: typer.Typer, cli_env: Settings) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["history"])
    assert r.exit_code == 0 and "no commands yet" in r.stdout
    r = runner.invoke(app, ["undo"])
    assert r.exit_code == 1 and "nothing to undo" in r.stderr and r.stdout == ""
    r = runner.invoke(app, ["redo"])
    assert r.exit_code == 1 and "nothing to redo" in r.stderr

    w = CatalogWriter(open_catalog(cli_env), actor="cli:tester")
    adv = w.create("advertiser", {"name": "Acme"})
    w.update("advertiser", adv["id"], {"status": "paused"})
    r = runner.invoke(app, ["history", "--json"])
    assert r.exit_code == 0
    rows = json.loads(r.stdout)["commands"]
    assert [x["state"] for x in rows] == ["done", "done"] and rows[0]["actor"] == "cli:tester"

    r = runner.invoke(app, ["undo"])
    assert r.exit_code == 0 and r.stdout.startswith("undone #") and "status='paused'" in r.stdout
    r = runner.invoke(app, ["history"])
    newest = next(line for line in r.stdout.splitlines() if f" {rows[0]['id']} " in line)
    assert "undone" in newest and "status='paused'" in newest
    assert "history of cli:tester" in r.stdout
    r = runner.invoke(app, ["redo", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["redone"]["id"] == rows[0]["id"]


def test_conflict_goes_to_stderr(app: typer.Typer, cli_env: Settings) -> None:
    factory = open_catalog(cli_env)
    adv = CatalogWriter(factory, actor="cli:tester").create("advertiser", {"name": "Acme"})
    CatalogWriter(factory, actor="someone-else").update("advertiser", adv["id"], {"name": "X"})
    r = CliRunner().invoke(app, ["undo"])
    assert r.exit_code == 1
    assert "cannot undo" in r.stderr and "someone-else" in r.stderr and r.stdout == ""


def test_every_cli_catalog_change_is_one_undoable_command(
    app: typer.Typer, cli_env: Settings
) -> None:
    runner = CliRunner()

    def run(*args: str) -> dict[str, object]:
        r = runner.invoke(app, [*args, "--json"])
        assert r.exit_code == 0, r.stderr
        out: dict[str, object] = json.loads(r.stdout)
        return out

    adv = run("catalog", "create", "advertiser", '{"name": "Acme"}')["id"]
    camp = run(
        "catalog",
        "create",
        "campaign",
        json.dumps(
            {
                "advertiser_id": adv,
                "name": "S",
                "budget_total": "10",
                "start": "2026-03-01T00:00:00Z",
                "end": "2026-12-01T00:00:00Z",
            }
        ),
    )["id"]
    lis = [
        run(
            "catalog",
            "create",
            "line-items",
            json.dumps({"campaign_id": camp, "name": f"L{i}", "bid_cpm": "1"}),
        )["id"]
        for i in range(2)
    ]
    cr = run(
        "catalog",
        "create",
        "creative",
        json.dumps(
            {
                "advertiser_id": adv,
                "name": "c",
                "format": "video_15s",
                "attributes": {"duration": 5},
            }
        ),
    )["id"]
    run("catalog", "attach", str(lis[0]), str(cr))
    run("catalog", "detach", str(lis[0]), str(cr))
    run("catalog", "update", "campaign", str(camp), '{"budget_total": "20"}')
    items = run("catalog", "bulk", "line_item", f"{lis[0]},{lis[1]}", '{"status": "archived"}')
    assert [i["status"] for i in items["items"]] == ["archived", "archived"]  # type: ignore[index]

    hist = run("history")["commands"]
    assert [h["description"].split(" ")[0] for h in hist] == [  # type: ignore[index, union-attr]
        "bulk",
        "update",
        "detach",
        "attach",
        "create",
        "create",
        "create",
        "create",
        "create",
    ]
    r = runner.invoke(app, ["undo"])  # the whole bulk edit, as one
    assert r.exit_code == 0 and r.stdout.count("restored (status: archived -> draft)") == 2
    for _ in range(8):
        assert runner.invoke(app, ["undo"]).exit_code == 0
    assert run("catalog", "list", "advertiser")["items"] == []
    r = runner.invoke(app, ["catalog", "bulk", "line_item", "1,x", "{}"])
    assert r.exit_code == 1 and "ids must be comma-separated integers" in r.stderr


def test_history_depth_setting_bounds_cli_undo(
    app: typer.Typer, cli_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADTARGET_HISTORY_DEPTH", "2")
    get_settings.cache_clear()
    runner = CliRunner()
    for name in ("a", "b", "c"):
        r = runner.invoke(app, ["catalog", "create", "advertiser", json.dumps({"name": name})])
        assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["history", "--json"])
    assert [h["description"] for h in json.loads(r.stdout)["commands"]] == [
        "create advertiser 'c' (id 3)",
        "create advertiser 'b' (id 2)",
    ]
    assert runner.invoke(app, ["undo"]).exit_code == 0
    assert runner.invoke(app, ["undo"]).exit_code == 0
    r = runner.invoke(app, ["undo"])
    assert r.exit_code == 1 and "nothing to undo" in r.stderr
    r = runner.invoke(app, ["catalog", "list", "advertiser", "--json"])
    assert [i["name"] for i in json.loads(r.stdout)["items"]] == ["a"]  # fell off the bottom
