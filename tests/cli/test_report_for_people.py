"""``adtarget report`` for people: last 7 days by default, names beside ids, geo, empty ranges,
Parquet; and the chart: named series in a stable order, the currency, a title with the window."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from adtarget.cli.main import app
from adtarget.delivery.chart import build_figure
from adtarget.settings import get_settings

runner = CliRunner()
WIDE = {"COLUMNS": "160", "TERM": "dumb"}


def _ok(*args: str) -> Any:
    result = runner.invoke(app, list(args), env=WIDE)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A campaign in EUR with two line items and delivery today and 3 and 10 days ago."""
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    base = ["--data-dir", str(tmp_path / "data")]

    def make(kind: str, body: dict[str, Any]) -> int:
        out = _ok(*base, "catalog", "create", kind, json.dumps(body), "--json").stdout
        return int(json.loads(out)["id"])

    adv = make("advertiser", {"name": "Acme"})
    camp = make(
        "campaign",
        {
            "advertiser_id": adv,
            "name": "Spring",
            "budget_total": 1000,
            "currency": "EUR",
            "start": "2026-01-01",
            "end": "2027-12-31",
        },
    )
    items = {
        n: make("line_item", {"campaign_id": camp, "name": n, "bid_cpm": 5})
        for n in ("Zed", "Alpha")
    }
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    events = []
    for days, country, name, n in (
        (0, "US", "Zed", 3),
        (3, "DE", "Alpha", 2),
        (10, "US", "Zed", 5),
    ):
        for i in range(n):
            events.append(
                {
                    "event_id": f"e{days}-{i}",
                    "type": "impression",
                    "ts": (now - timedelta(days=days)).isoformat(),
                    "user_id": f"u{i}",
                    "line_item_id": str(items[name]),
                    "creative_id": "1",
                    "country": country,
                    "cost": 0.5,
                }
            )
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    _ok(*base, "events", "import", str(path), "--json")
    yield {"base": base, "items": items, "camp": camp, "tmp": tmp_path}
    get_settings.cache_clear()


def test_default_window_is_the_last_7_days_with_names_beside_ids(world: dict[str, Any]) -> None:
    base, items = world["base"], world["items"]
    rows = json.loads(_ok(*base, "report", "--group-by", "line_item", "--json").stdout)["rows"]
    got = {r["line_item_id"]: r["impressions"] for r in rows}
    assert got == {str(items["Zed"]): 3, str(items["Alpha"]): 2}  # 10 days ago left out

    table = _ok(
        *base, "report", "--group-by", "campaign,line_item", "--metrics", "impressions,spend"
    ).stdout
    first = (datetime.now(UTC).date() - timedelta(days=6)).isoformat()
    assert f"delivery {first} to {datetime.now(UTC).date()} (UTC)" in table
    zed = next(line for line in table.splitlines() if "Zed" in line)
    assert f"{world['camp']}  " in zed and "Spring" in zed and f"{items['Zed']}  " in zed
    assert "spend (EUR)" in table and "1.50" in zed


def test_geo_groups_by_the_events_country(world: dict[str, Any]) -> None:
    out = _ok(*world["base"], "report", "--group-by", "geo", "--json").stdout
    assert {r["country"]: r["impressions"] for r in json.loads(out)["rows"]} == {"US": 3, "DE": 2}
    helped = _ok("report", "--help").stdout
    assert "geo" in helped


def test_an_empty_range_says_so(world: dict[str, Any]) -> None:
    result = runner.invoke(
        app, [*world["base"], "report", "--from", "2020-01-01", "--to", "2020-01-07"], env=WIDE
    )
    assert result.exit_code == 0
    assert "no delivery events from 2020-01-01 to 2020-01-07 (UTC)" in result.output


def test_parquet_needs_out_and_is_typed(world: dict[str, Any]) -> None:
    base, out = world["base"], world["tmp"] / "r.parquet"
    refused = runner.invoke(app, [*base, "report", "--format", "parquet"], env=WIDE)
    assert refused.exit_code == 1 and "--out" in refused.output
    _ok(*base, "report", "--group-by", "day,line_item", "--format", "parquet", "--out", str(out))
    table = pq.read_table(out)
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("impressions").type == pa.int64()
    assert table.schema.field("spend").type == pa.float64()
    assert sum(table.column("impressions").to_pylist()) == 5
    empty = world["tmp"] / "e.parquet"
    _ok(
        *base,
        "report",
        "--from",
        "2020-01-01",
        "--to",
        "2020-01-02",
        "--format",
        "parquet",
        "--out",
        str(empty),
    )
    assert pq.read_table(empty).num_rows == 0 and "spend" in pq.read_table(empty).schema.names


def test_chart_names_series_in_a_stable_order_with_currency_and_title(
    world: dict[str, Any],
) -> None:
    base, png = world["base"], world["tmp"] / "c.png"
    result = _ok(
        *base,
        "report",
        "--group-by",
        "day,line_item",
        "--metrics",
        "impressions,spend",
        "--chart",
        str(png),
    )
    assert png.read_bytes()[:4] == b"\x89PNG" and "chart saved" in result.output

    rows = [
        {"day": "2026-12-01", "line_item_id": "7", "impressions": 9, "spend": 1.0},
        {"day": "2026-12-01", "line_item_id": "3", "impressions": 1, "spend": 0.1},
        {"day": "2026-12-02", "line_item_id": "7", "impressions": 2, "spend": 0.2},
    ]
    labels = {"line_item_id": {"7": "Zed", "3": "Alpha"}}
    for order in (rows, rows[::-1]):
        fig = build_figure(
            order,
            group_by=["day", "line_item_id"],
            metrics=["impressions", "spend"],
            title="impressions, spend by day and line item, 2026-12-01 to 2026-12-02 (UTC)",
            labels=labels,
            currency="EUR",
        )
        top, bottom = fig.axes
        legend = [t.get_text() for t in top.get_legend().get_texts()]
        assert legend == ["Alpha (3)", "Zed (7)"]  # by name, whatever the volume or row order
        assert top.get_legend().get_title().get_text() == "line item"
        assert bottom.get_ylabel() == "spend (EUR)" and top.get_ylabel() == "impressions"
        assert "2026-12-01 to 2026-12-02" in top.get_title()
