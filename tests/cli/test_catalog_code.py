"""``adtarget plan | apply | export-catalog`` on a real SQLite catalog, through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from adtarget.catalog.db import open_catalog
from adtarget.catalog.plan import make_plan
from adtarget.catalog.spec import CatalogFileError, load_file, parse_document
from adtarget.cli.main import app
from adtarget.settings import Settings, get_settings

CATALOG = """\
version: 1
dimensions:
  - name: country
    type: category
advertisers:
  - name: Acme
    creatives:
      - name: Spot 15
        format: video_15s
        attributes: {media_url: "https://cdn.example/a.mp4", duration: 15}
    campaigns:
      - name: Spring
        budget_total: 1000
        start: 2026-01-01T00:00:00Z
        end: 2026-12-31T00:00:00Z
        status: active
        line_items:
          - name: US
            targeting: 'country = "US"'
            bid_cpm: 5.5
            priority: 3
            frequency_cap: {count: 3, window_seconds: 86400}
            creatives: [Spot 15]
          - name: CA
            targeting: 'country = "CA"'
            bid_cpm: 4
segments:
  - name: north_america
    kind: rule
    rule: 'country in ("US", "CA")'
    advertiser: Acme
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ADTARGET_ACTOR", "cli:gitops")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def write(tmp_path: Path, text: str, name: str = "catalog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def catalog_rows(settings: Settings) -> dict[str, Any]:
    """What export-catalog would print, as a document."""
    from adtarget.catalog.export import export_document

    with open_catalog(settings)() as session:
        return export_document(session)


def test_plan_apply_replan_export_round_trip(env: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, CATALOG)
    r = run("plan", "-f", str(path))
    assert r.exit_code == 0, r.output
    assert "+ create advertiser 'Acme'" in r.stdout
    assert "+ create line_item 'Acme / Spring / US'" in r.stdout
    assert "attach creative 'Acme / Spot 15' to line_item 'Acme / Spring / US'" in r.stdout
    assert "7 to create, 0 to update, 0 to archive, 1 link change" in r.stdout
    assert catalog_rows(env) == {"version": 1}  # plan changed nothing

    r = run("apply", "-f", str(path), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["plan"]["summary"]["create"] == 7
    assert set(out["created"]) >= {"advertiser Acme", "line_item Acme / Spring / US"}

    r = run("plan", "-f", str(path))
    assert r.exit_code == 0 and "already matches" in r.stdout

    r = run("export-catalog")
    assert r.exit_code == 0, r.output
    exported = yaml.safe_load(r.stdout)
    li = exported["advertisers"][0]["campaigns"][0]["line_items"]
    assert [x["name"] for x in li] == ["CA", "US"]
    assert li[1]["creatives"] == ["Spot 15"] and li[1]["frequency_cap"] == {
        "count": 3,
        "window_seconds": 86400,
    }
    assert exported["segments"][0]["advertiser"] == "Acme"
    again = write(tmp_path, r.stdout, "exported.yaml")
    r = run("plan", "-f", str(again), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["actions"] == []


def test_changes_are_planned_field_by_field_and_one_undo_reverses_the_apply(
    env: Settings, tmp_path: Path
) -> None:
    path = write(tmp_path, CATALOG)
    assert run("apply", "-f", str(path)).exit_code == 0
    before = catalog_rows(env)
    changed = (
        CATALOG.replace("budget_total: 1000", "budget_total: 1500")
        .replace("bid_cpm: 5.5", "bid_cpm: 6")
        .replace(
            """          - name: CA
            targeting: 'country = "CA"'
            bid_cpm: 4
""",
            "",
        )
    )
    path2 = write(tmp_path, changed, "v2.yaml")
    r = run("plan", "-f", str(path2))
    assert r.exit_code == 0, r.output
    assert "~ update campaign 'Acme / Spring'" in r.stdout
    assert "budget_total: 1000.0 -> 1500.0" in r.stdout
    assert "bid_cpm: 5.5 -> 6.0" in r.stdout
    assert "- archive line_item 'Acme / Spring / CA'" in r.stdout
    assert "0 to create, 2 to update, 1 to archive" in r.stdout

    r = run("apply", "-f", str(path2))
    assert r.exit_code == 0 and "One `adtarget undo` reverses" in r.stdout
    after = catalog_rows(env)
    camp = after["advertisers"][0]["campaigns"][0]
    assert camp["budget_total"] == 1500.0 and [x["name"] for x in camp["line_items"]] == ["US"]

    r = run("undo")
    assert r.exit_code == 0, r.output
    assert catalog_rows(env) == before
    r = run("redo")
    assert r.exit_code == 0 and catalog_rows(env) == after
    # Undo twice: back to the empty catalog (the first apply is one command too).
    assert run("undo").exit_code == 0 and run("undo").exit_code == 0
    assert catalog_rows(env) == {"version": 1}


def test_apply_is_all_or_nothing_and_names_file_object_field(env: Settings, tmp_path: Path) -> None:
    bad = CATALOG.replace("'country = \"CA\"'", "'planet = \"mars\"'")
    path = write(tmp_path, bad)
    for verb in ("plan", "apply"):
        r = run(verb, "-f", str(path))
        assert r.exit_code == 1, r.output
        assert f"{path}: line_item 'Acme / Spring / CA': targeting" in r.stderr
        assert "planet" in r.stderr
    assert catalog_rows(env) == {"version": 1}  # the advertiser before it was rolled back too
    assert "nothing to undo" in run("undo").stderr


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda t: t.replace("bid_cpm: 4", "bid_cpm: four"),
            "line_item 'Acme / Spring / CA': bid_cpm: ",
        ),
        (
            lambda t: t.replace("bid_cpm: 4", "bid_cpm: 4\n            colour: red"),
            "line_item 'Acme / Spring / CA': colour: unknown field",
        ),
        (
            lambda t: t.replace("creatives: [Spot 15]", "creatives: [Spot 99]"),
            "no creative named 'Spot 99' is declared under advertiser 'Acme'",
        ),
        (
            lambda t: t.replace("advertiser: Acme", "advertiser: Globex"),
            "segment 'north_america': advertiser: no advertiser named 'Globex'",
        ),
        (
            lambda t: t.replace("- name: CA", "- name: US"),
            "'Acme / Spring / US': name: declared twice",
        ),
        (
            lambda t: t.replace("version: 1", "version: 1\nwidgets: []"),
            "top level: widgets: unknown",
        ),
        (lambda t: t.replace("  - name: Acme", "  - name: Acme\n  bad: [", 1), "line 7"),
    ],
)
def test_file_errors_name_file_object_and_field(
    env: Settings, tmp_path: Path, mutate: Any, expected: str
) -> None:
    path = write(tmp_path, mutate(CATALOG))
    r = run("plan", "-f", str(path))
    assert r.exit_code == 1
    assert str(path) in r.stderr and expected in r.stderr, r.stderr


def test_archived_objects_are_final_and_unchangeable_fields_refused(
    env: Settings, tmp_path: Path
) -> None:
    assert run("apply", "-f", str(write(tmp_path, CATALOG))).exit_code == 0
    spec = parse_document(
        yaml.safe_load(CATALOG.replace("type: category", "type: set")), source="f.yaml"
    )
    with open_catalog(env)() as session, pytest.raises(CatalogFileError) as err:
        make_plan(session, spec)
    assert "f.yaml: dimension 'country': type: cannot be changed" in err.value.message

    without_acme = "version: 1\ndimensions:\n  - name: country\n    type: category\n"
    r = run("apply", "-f", str(write(tmp_path, without_acme, "empty.yaml")))
    assert r.exit_code == 0 and "archive advertiser 'Acme'" in r.stdout
    r = run("plan", "-f", str(write(tmp_path, CATALOG)))
    assert r.exit_code == 1 and "advertiser 'Acme': name: is archived" in r.stderr


def test_no_archive_leaves_unlisted_objects(env: Settings, tmp_path: Path) -> None:
    assert run("apply", "-f", str(write(tmp_path, CATALOG))).exit_code == 0
    other = "advertisers:\n  - name: Globex\n"
    r = run("plan", "-f", str(write(tmp_path, other, "o.yaml")), "--no-archive", "--json")
    assert r.exit_code == 0
    assert [a["op"] for a in json.loads(r.stdout)["actions"]] == ["create"]


def test_load_file_reads_yaml_timestamps(tmp_path: Path) -> None:
    spec = load_file(write(tmp_path, CATALOG))
    camp = spec.of_kind("campaign")[0]
    assert camp.fields["start"] == "2026-01-01T00:00:00+00:00"
    assert [d.kind for d in spec.decls][:2] == ["dimension", "advertiser"]
