"""``adtarget events import`` (NDJSON, JSON, CSV, Parquet) and ``adtarget report`` via CliRunner."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from adtarget.cli.delivery import register
from adtarget.settings import Settings, get_settings

from .conftest import END_DAY, START_DAY, make_events

runner = CliRunner()


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """adtarget (test)."""

    register(app)
    yield app
    get_settings.cache_clear()


def _import(cli: typer.Typer, path: Path, code: int = 0) -> dict:
    result = runner.invoke(cli, ["events", "import", str(path), "--no-catalog", "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_import_every_format_counts_once(cli: typer.Typer, tmp_path: Path) -> None:
    events = make_events(400, seed=21)
    nd = tmp_path / "a.ndjson"
    lines = [json.dumps(e) for e in events[:150]] + ["{broken", json.dumps(events[0])]
    nd.write_text("\n".join(lines) + "\n")
    out = _import(cli, nd, code=3)  # some rows rejected: a script must notice
    assert (out["accepted"], out["duplicates"]) == (150, 1)
    assert [(r["index"], r["field"]) for r in out["rejected"]] == [(150, "event")]

    js = tmp_path / "b.json"
    js.write_text(json.dumps(events[100:200]))
    assert _import(cli, js)["accepted"] == 50

    flat = [{k: v for k, v in e.items() if k != "dims"} for e in events[200:300]]
    cs = tmp_path / "c.csv"
    with cs.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=sorted({k for e in flat for k in e}))
        w.writeheader()
        w.writerows(flat)
    assert _import(cli, cs) == {"file": str(cs), "accepted": 100, "duplicates": 0, "rejected": []}

    pq.write_table(
        pa.Table.from_pylist(
            flat[:50] + [{k: v for k, v in e.items() if k != "dims"} for e in events[300:]]
        ),
        tmp_path / "d.parquet",
    )
    out = _import(cli, tmp_path / "d.parquet")
    assert (out["accepted"], out["duplicates"]) == (100, 50)

    # the report agrees with the events
    result = runner.invoke(
        cli,
        [
            "report",
            "--from",
            START_DAY.isoformat(),
            "--to",
            END_DAY.isoformat(),
            "--group-by",
            "",
            "--metrics",
            "requests,impressions,clicks",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["rows"]
    assert row == {
        t: sum(e["type"] == k for e in events)
        for t, k in (("requests", "decision"), ("impressions", "impression"), ("clicks", "click"))
    }


def test_import_exits_non_zero_when_rows_are_rejected(cli: typer.Typer, tmp_path: Path) -> None:
    events = make_events(5, seed=3)
    nd = tmp_path / "x.ndjson"
    nd.write_text("\n".join([json.dumps(e) for e in events] + ["[1, 2]"]) + "\n")
    result = runner.invoke(cli, ["events", "import", str(nd), "--no-catalog"])
    assert result.exit_code == 3, result.output
    assert "5 accepted" in result.stdout and "1 rejected" in result.stdout
    clean = tmp_path / "y.ndjson"
    clean.write_text("\n".join(json.dumps(e) for e in make_events(3, seed=4)) + "\n")
    assert runner.invoke(cli, ["events", "import", str(clean), "--no-catalog"]).exit_code == 0


def test_report_formats_out_and_chart(cli: typer.Typer, tmp_path: Path) -> None:
    nd = tmp_path / "e.ndjson"
    nd.write_text("\n".join(json.dumps(e) for e in make_events(300, seed=22)))
    _import(cli, nd)
    base = [
        "report",
        "--from",
        START_DAY.isoformat(),
        "--to",
        END_DAY.isoformat(),
        "--group-by",
        "campaign,day",
        "--metrics",
        "impressions,clicks,spend",
    ]
    table = runner.invoke(cli, base)
    assert table.exit_code == 0 and "campaign_id" in table.stdout and "c00" in table.stdout
    out = tmp_path / "r.csv"
    chart = tmp_path / "r.png"
    result = runner.invoke(
        cli, [*base, "--format", "csv", "--out", str(out), "--chart", str(chart)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and set(rows[0]) == {"campaign_id", "day", "impressions", "clicks", "spend"}
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    short_csv = runner.invoke(cli, [*base, "--csv"])
    assert short_csv.exit_code == 0 and short_csv.stdout == out.read_text()
    short_json = runner.invoke(cli, [*base, "--json"])
    assert short_json.exit_code == 0
    assert [r["campaign_id"] for r in json.loads(short_json.stdout)["rows"]] == [
        r["campaign_id"] for r in rows
    ]
    both = runner.invoke(cli, [*base, "--csv", "--json"])
    assert both.exit_code == 1 and "exclude" in both.stderr


def test_report_errors_name_the_field(cli: typer.Typer) -> None:
    result = runner.invoke(
        cli,
        ["report", "--from", "2026-01-01", "--to", "2026-01-02", "--metrics", "impressions,profit"],
    )
    assert result.exit_code == 1 and "profit" in result.stderr and "metrics" in result.stderr
    result = runner.invoke(
        cli,
        [
            "report",
            "--from",
            "2026-01-01",
            "--to",
            "2026-01-02",
            "--group-by",
            "campaign",
            "--chart",
            "x.png",
        ],
    )
    assert result.exit_code == 1 and "day or hour" in result.stderr


def test_prune_applies_retention(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nd = tmp_path / "p.ndjson"
    nd.write_text("\n".join(json.dumps(e) for e in make_events(100, seed=23)))
    _import(cli, nd)
    monkeypatch.setenv("ADTARGET_EVENTS_RETENTION_DAYS", "1")
    get_settings.cache_clear()
    result = runner.invoke(cli, ["events", "prune", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["retention_days"] == 1 and out["dropped_days"]
    assert all(d < END_DAY.isoformat() for d in out["dropped_days"])
