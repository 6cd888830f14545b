"""``adtarget catalog formats`` / ``add-format``: a new ad type is a row, usable at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adtarget.cli.main import app
from adtarget.settings import get_settings

runner = CliRunner()
BUMPER = {
    "type": "object",
    "properties": {"media_url": {"type": "string"}, "duration": {"type": "number", "maximum": 6}},
    "additionalProperties": False,
}


def _creative(duration: int) -> str:
    body = {"advertiser_id": 1, "name": "b", "format": "bumper_6s"}
    return json.dumps({**body, "attributes": {"duration": duration}})


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield ["--data-dir", str(tmp_path / "data")]
    get_settings.cache_clear()


def test_a_new_format_validates_creatives_from_the_next_call(cli: list[str]) -> None:
    added = runner.invoke(
        app,
        [
            *cli,
            "catalog",
            "add-format",
            "bumper_6s",
            "--media",
            "video",
            "--schema",
            json.dumps(BUMPER),
            "--json",
        ],
    )
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["name"] == "bumper_6s"
    listed = runner.invoke(app, [*cli, "catalog", "formats", "--json"])
    names = [f["name"] for f in json.loads(listed.stdout)["items"]]
    assert {"bumper_6s", "video_15s", "video_30s", "pause_ad"} <= set(names)

    runner.invoke(app, [*cli, "catalog", "create", "advertiser", '{"name": "A"}'])
    bad = runner.invoke(
        app,
        [
            *cli,
            "catalog",
            "create",
            "creative",
            _creative(10),
        ],
    )
    assert bad.exit_code == 1 and "attributes.duration" in bad.stderr
    good = runner.invoke(
        app,
        [
            *cli,
            "catalog",
            "create",
            "creative",
            _creative(6),
        ],
    )
    assert good.exit_code == 0, good.output


def test_bad_schema_and_duplicate_name_are_refused(cli: list[str]) -> None:
    bad = runner.invoke(
        app,
        [*cli, "catalog", "add-format", "x1", "--media", "video", "--schema", '{"type": "string"}'],
    )
    assert bad.exit_code == 1 and "json_schema" in bad.stderr
    dup = runner.invoke(
        app,
        [
            *cli,
            "catalog",
            "add-format",
            "video_30s",
            "--media",
            "video",
            "--schema",
            json.dumps(BUMPER),
        ],
    )
    assert dup.exit_code == 1 and "already exists" in dup.stderr
