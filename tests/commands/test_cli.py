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
    assert "undone" in r.stdout.splitlines()[0]
    r = runner.invoke(app, ["redo", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["redone"]["id"] == rows[0]["id"]


def test_conflict_goes_to_stderr(app: typer.Typer, cli_env: Settings) -> None:
    factory = open_catalog(cli_env)
    adv = CatalogWriter(factory, actor="cli:tester").create("advertiser", {"name": "Acme"})
    CatalogWriter(factory, actor="someone-else").update("advertiser", adv["id"], {"name": "X"})
    r = CliRunner().invoke(app, ["undo"])
    assert r.exit_code == 1
    assert "cannot undo" in r.stderr and "someone-else" in r.stderr and r.stdout == ""
