"""The ``adtarget`` command: global options, keys, and serve's open-mode guard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adtarget import __version__
from adtarget.api.auth import hash_key
from adtarget.catalog.db import open_catalog
from adtarget.catalog.tables import ApiKey
from adtarget.cli.main import app
from adtarget.cli.serve import is_loopback
from adtarget.settings import Settings, get_settings

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir; the env var is restored after the test (the CLI callback exports it)."""
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(tmp_path / "unused"))
    monkeypatch.delenv("ADTARGET_ADMIN_KEY", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"adtarget {__version__}"


def test_data_dir_option_reaches_every_subcommand(data_dir: Path) -> None:
    result = runner.invoke(app, ["--data-dir", str(data_dir), "keys", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"keys": []}
    assert os.environ["ADTARGET_DATA_DIR"] == str(data_dir)
    assert get_settings().data_dir == data_dir
    assert (data_dir / "catalog.sqlite3").exists()


def test_keys_create_list_revoke(data_dir: Path) -> None:
    base = ["--data-dir", str(data_dir), "keys"]
    adv = Settings(data_dir=data_dir)
    created = runner.invoke(app, [*base, "create", "--role", "reader", "--name", "bi"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert key.startswith("adt_")
    with open_catalog(adv)() as session:
        row = session.query(ApiKey).one()
        assert row.key_hash == hash_key(key) and row.role == "reader" and row.name == "bi"
    listed = json.loads(runner.invoke(app, [*base, "list", "--json"]).stdout)["keys"]
    assert [(k["id"], k["role"]) for k in listed] == [(row.id, "reader")]
    assert key not in json.dumps(listed)
    assert runner.invoke(app, [*base, "revoke", str(row.id)]).exit_code == 0
    assert json.loads(runner.invoke(app, [*base, "list", "--json"]).stdout) == {"keys": []}
    assert runner.invoke(app, [*base, "revoke", "999"]).exit_code == 1


def test_advertiser_key_needs_an_existing_advertiser(data_dir: Path) -> None:
    base = ["--data-dir", str(data_dir), "keys", "create"]
    missing = runner.invoke(app, [*base, "--role", "advertiser"])
    assert missing.exit_code == 1 and "advertiser" in missing.stderr
    unknown = runner.invoke(app, [*base, "--role", "advertiser", "--advertiser", "7"])
    assert unknown.exit_code == 1 and "advertiser 7 does not exist" in unknown.stderr
    bad_role = runner.invoke(app, [*base, "--role", "root"])
    assert bad_role.exit_code == 1 and "role" in bad_role.stderr


def test_serve_refuses_non_loopback_when_open(data_dir: Path) -> None:
    result = runner.invoke(app, ["--data-dir", str(data_dir), "serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to bind 0.0.0.0" in result.stderr


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.5.0.1", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_catalog_commands_are_undoable(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADTARGET_ACTOR", "cli-test")
    base = ["--data-dir", str(data_dir)]
    made = runner.invoke(
        app, [*base, "catalog", "create", "advertiser", '{"name": "Acme"}', "--json"]
    )
    assert made.exit_code == 0, made.output
    adv = json.loads(made.stdout)
    changed = runner.invoke(
        app,
        [
            *base,
            "catalog",
            "update",
            "advertiser",
            str(adv["id"]),
            '{"name": "Renamed"}',
            "--version",
            "1",
            "--json",
        ],
    )
    assert json.loads(changed.stdout)["name"] == "Renamed"
    stale = runner.invoke(
        app,
        [
            *base,
            "catalog",
            "update",
            "advertiser",
            str(adv["id"]),
            '{"name": "Again"}',
            "--version",
            "1",
        ],
    )
    assert stale.exit_code == 1 and "version" in stale.stderr
    assert runner.invoke(app, [*base, "undo"]).exit_code == 0
    shown = runner.invoke(app, [*base, "catalog", "show", "advertiser", str(adv["id"]), "--json"])
    assert json.loads(shown.stdout)["name"] == "Acme"
    listed = runner.invoke(app, [*base, "catalog", "list", "advertisers", "--json"])
    assert [a["name"] for a in json.loads(listed.stdout)["items"]] == ["Acme"]
    bad = runner.invoke(app, [*base, "catalog", "create", "campaign", '{"name": "x"}'])
    assert bad.exit_code == 1 and "advertiser_id" in bad.stderr


def test_a_bad_setting_is_one_error_line_naming_the_variable(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADTARGET_INDEX_FREEZE_GC", "maybe")
    monkeypatch.setenv("ADTARGET_MAX_INFLIGHT", "lots")
    result = runner.invoke(app, ["history"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("error: ADTARGET_") and "\n" not in line
    assert "ADTARGET_INDEX_FREEZE_GC: Input should be a valid boolean" in line
    assert "(got 'maybe')" in line and "ADTARGET_MAX_INFLIGHT: " in line and "(got 'lots')" in line
    assert "Traceback" not in result.output


def test_starting_the_cli_loads_no_web_framework_or_duckdb() -> None:
    """FastAPI (with the API's container) and DuckDB cost ~0.2 s each at import; only the
    commands that use them (serve, forecast, hashed uploads, the Parquet event store) load them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from adtarget.cli.main import app\n"
        "heavy = [m for m in ('fastapi', 'starlette', 'duckdb', 'matplotlib', 'ray', 'uvicorn')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
