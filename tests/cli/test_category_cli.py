"""Competitive ``category`` through ``adtarget catalog``, undo, and catalog-as-code YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from adtarget.cli.main import app as cli_app


def test_category_through_the_cli_and_undo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADTARGET_ACTOR", "cli-test")
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path / "data")]
    body = '{"name": "Acme", "category": "Auto"}'
    made = runner.invoke(cli_app, [*base, "catalog", "create", "advertiser", body, "--json"])
    assert made.exit_code == 0, made.output
    adv = json.loads(made.stdout)
    show = [*base, "catalog", "show", "advertiser", str(adv["id"])]
    assert adv["category"] == "auto"
    changed = runner.invoke(
        cli_app,
        [*base, "catalog", "update", "advertiser", str(adv["id"]), '{"category": "telecom"}'],
    )
    assert changed.exit_code == 0, changed.output
    shown = runner.invoke(cli_app, [*show, "--json"])
    assert json.loads(shown.stdout)["category"] == "telecom"
    assert runner.invoke(cli_app, [*base, "undo"]).exit_code == 0
    shown = runner.invoke(cli_app, [*show, "--json"])
    assert json.loads(shown.stdout)["category"] == "auto"
    bad = runner.invoke(
        cli_app, [*base, "catalog", "create", "advertiser", '{"name": "B", "category": ""}']
    )
    assert bad.exit_code == 1 and "category" in bad.stderr


CATALOG = """\
version: 1
advertisers:
  - name: Acme
    category: auto
    campaigns:
      - name: Spring
        category: telecom
        budget_total: 1000
        start: 2026-01-01T00:00:00Z
        end: 2026-12-31T00:00:00Z
  - name: Plain
"""


def test_category_in_catalog_as_code_plan_apply_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adtarget.settings import get_settings

    monkeypatch.setenv("ADTARGET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ADTARGET_ACTOR", "cli:gitops")
    get_settings.cache_clear()
    runner = CliRunner()
    path = tmp_path / "c.yaml"
    path.write_text(CATALOG, encoding="utf-8")
    try:
        r = runner.invoke(cli_app, ["apply", "-f", str(path)])
        assert r.exit_code == 0, r.output
        r = runner.invoke(cli_app, ["export-catalog"])
        exported = yaml.safe_load(r.stdout)
        acme = exported["advertisers"][0]
        assert acme["category"] == "auto" and acme["campaigns"][0]["category"] == "telecom"
        assert "category" not in exported["advertisers"][1]  # unset: left out
        path.write_text(CATALOG.replace("category: telecom", "category: finance"), "utf-8")
        r = runner.invoke(cli_app, ["plan", "-f", str(path)])
        assert r.exit_code == 0, r.output
        assert "category: 'telecom' -> 'finance'" in r.stdout
        assert runner.invoke(cli_app, ["apply", "-f", str(path)]).exit_code == 0
        r = runner.invoke(cli_app, ["plan", "-f", str(path), "--json"])
        assert json.loads(r.stdout)["actions"] == []
        assert runner.invoke(cli_app, ["undo"]).exit_code == 0  # one undo reverses the apply
        r = runner.invoke(cli_app, ["export-catalog"])
        assert yaml.safe_load(r.stdout)["advertisers"][0]["campaigns"][0]["category"] == "telecom"
        bad = tmp_path / "bad.yaml"
        bad.write_text(CATALOG.replace("category: auto", "category: ''"), "utf-8")
        r = runner.invoke(cli_app, ["plan", "-f", str(bad)])
        assert r.exit_code != 0 and "advertiser 'Acme'" in r.output and "category" in r.output
    finally:
        get_settings.cache_clear()
