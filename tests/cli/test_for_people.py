"""The CLI for people: field help per kind, objects as tables with names, help without markup."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from adtarget.catalog.kinds import EDITABLE, KINDS
from adtarget.cli.fields import create_fields
from adtarget.cli.main import app
from adtarget.settings import get_settings

runner = CliRunner()
WIDE = {"COLUMNS": "160", "TERM": "dumb"}


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ADTARGET_ACTOR", "cli-people")
    get_settings.cache_clear()
    yield ["--data-dir", str(tmp_path / "data")]
    get_settings.cache_clear()


def _run(*args: str) -> Any:
    result = runner.invoke(app, list(args), env=WIDE)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("kind", [k.name for k in EDITABLE])
def test_create_kind_help_lists_every_field_of_the_model_with_type_and_required(
    kind: str,
) -> None:
    out = _run("catalog", "create", kind, "--help").output
    model_fields = KINDS[kind].create.model_fields
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] in model_fields:
            rows[cells[0]] = line
    assert set(rows) == set(model_fields)  # every field of the pydantic model, nothing else
    for name, info in model_fields.items():
        assert (" yes" in rows[name]) is info.is_required(), rows[name]


def test_create_help_shows_types_ranges_choices_and_defaults() -> None:
    out = _run("catalog", "create", "line_item", "--help").output
    line = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    assert "integer 1..16" in line["priority"] and line["priority"].rstrip().endswith("8")
    assert "number >= 0" in line["bid_cpm"] and "yes" in line["bid_cpm"]
    assert "even | asap" in line["pacing_mode"]
    assert "list of string" in line["formats"]
    assert "required fields: campaign_id, name, bid_cpm" in out
    fields = {f.name: f for f in create_fields(KINDS["line_item"])}
    assert fields["frequency_cap"].type == "{count: integer > 0, window_seconds: integer > 0}"


def test_plural_and_dashed_kinds_are_accepted_and_an_unknown_kind_lists_the_kinds(
    base: list[str],
) -> None:
    made = _run(*base, "catalog", "create", "advertisers", '{"name": "Acme"}', "--json")
    assert json.loads(made.stdout)["name"] == "Acme"
    for args in (["widget", "--help"], ["widget", "{}"]):
        bad = runner.invoke(app, [*base, "catalog", "create", *args], env=WIDE)
        assert bad.exit_code == 2
        assert "unknown kind 'widget'" in bad.output
        for kind in (k.name for k in EDITABLE):
            assert kind in bad.output


def test_objects_print_as_tables_with_names_and_no_reprs(base: list[str]) -> None:
    adv = json.loads(
        _run(
            *base,
            "catalog",
            "create",
            "advertiser",
            '{"name": "Acme", "frequency_cap": {"count": 3, "window_seconds": 86400}}',
            "--json",
        ).stdout
    )
    body = {
        "advertiser_id": adv["id"],
        "name": "Spring",
        "budget_total": 1000,
        "start": "2026-01-01",
        "end": "2026-12-31",
    }
    camp = json.loads(
        _run(*base, "catalog", "create", "campaign", json.dumps(body), "--json").stdout
    )
    shown = _run(
        *base,
        "catalog",
        "create",
        "line_item",
        json.dumps({"campaign_id": camp["id"], "name": "US", "bid_cpm": 4.5}),
    ).output
    creative = _run(
        *base,
        "catalog",
        "create",
        "creative",
        json.dumps(
            {
                "advertiser_id": adv["id"],
                "name": "Spot",
                "format": "video_30s",
                "attributes": {"media_url": "https://cdn.example/spot.mp4"},
            }
        ),
    ).output
    advertiser = _run(*base, "catalog", "show", "advertiser", str(adv["id"])).output
    listed = _run(*base, "catalog", "list", "line_item").output
    for out in (shown, creative, advertiser, listed):
        assert "None" not in out and "{'" not in out and "frequency_cap_count" not in out
        assert "targeting_json" not in out
    assert re.search(r"campaign\s+Spring \(\d+\)", shown)
    assert re.search(r"bid_cpm\s+4\.50", shown)
    assert re.search(r"attributes\s+media_url: https://cdn.example/spot.mp4", creative)
    assert re.search(r"advertiser\s+Acme \(\d+\)", creative)
    assert re.search(r"frequency_cap\s+3 per 1 day", advertiser)
    assert advertiser.count("frequency_cap") == 1
    header = next(ln for ln in listed.splitlines() if "priority" in ln)
    row = next(ln for ln in listed.splitlines() if " US " in ln)
    assert header.split() == [
        "id",
        "name",
        "status",
        "campaign",
        "priority",
        "bid_cpm",
        "targeting",
    ]
    assert "Spring (" in row
    assert row.index("4.50") + len("4.50") == header.index("bid_cpm") + len("bid_cpm")  # aligned

    undone = _run(*base, "undo").output
    assert "'" not in undone.split("\n", 1)[1]  # the changed fields, without Python quotes
    as_json = json.loads(
        _run(*base, "catalog", "show", "campaign", str(camp["id"]), "--json").stdout
    )
    assert as_json["advertiser_id"] == adv["id"] and "frequency_cap_count" in as_json


def _commands(cmd: Any, path: list[str]) -> Iterator[list[str]]:
    yield path
    if hasattr(cmd, "list_commands"):
        ctx = cmd.make_context(cmd.name or "adtarget", [], resilient_parsing=True)
        for name in cmd.list_commands(ctx):
            yield from _commands(cmd.get_command(ctx, name), [*path, name])


def test_no_command_help_shows_raw_markup() -> None:
    root = typer.main.get_command(app)
    paths = list(_commands(root, []))
    assert ["catalog", "create", "line_item"] in paths and ["report"] in paths
    for path in paths:
        out = _run(*path, "--help").output
        for raw in ("``", "[bold", "[/", "[green", "[red", "**", ":param", "Why "):
            assert raw not in out, (path, raw)
