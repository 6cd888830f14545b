"""The audience page shows the forecast for the typed rule beside its exact size."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from adtarget.decision.request_store import ParquetRequestStore, SampledRequest

expect = pytest.importorskip("playwright.sync_api", reason="playwright not installed").expect

if TYPE_CHECKING:
    from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser

RULE = 'country in ("US", "CA") and genres has any ("scifi")'


def _log_history(server: LiveServer) -> None:
    """Yesterday's sampled requests of 200 users of the rule (two each), at rate 0.5."""
    with server.api() as api:
        res = api.post("/v1/audiences/export", json={"rule": RULE, "format": "csv"})
        assert res.status_code == 200, res.text
    ids = [row["user_id"] for row in csv.DictReader(io.StringIO(res.text))][:200]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(hour=10)
    rows = [
        SampledRequest(yesterday.timestamp() + i * 60 + k, uid, {}, None, 1, (), 0.5)
        for i, uid in enumerate(ids) for k in range(2)
    ]  # fmt: skip
    ParquetRequestStore(server.data_dir / "requests").write(rows)


def test_forecast_beside_the_audience_size(page: Any, live_server: LiveServer) -> None:
    _log_history(live_server)
    start = (datetime.now(UTC) + timedelta(days=1)).date()
    body = {
        "targeting": RULE,
        "start": f"{start.isoformat()}T00:00:00Z",
        "end": f"{(start + timedelta(days=7)).isoformat()}T00:00:00Z",
        "priority": 1,
        "bid_cpm": 4,
    }
    with live_server.api() as api:
        expected = api.post("/v1/forecast", json=body).json()
    assert expected["forecast_impressions"] > 0, expected
    page.goto(f"{live_server.url}/console#/audience")
    page.get_by_role("textbox", name="API key").fill(live_server.admin_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("textbox", name="Rule").fill(RULE)
    expect(page.get_by_role("status")).to_contain_text(re.compile(r"\d+ users"))
    page.get_by_label("Priority").fill("1")
    page.get_by_label("Bid CPM").fill("4")
    page.get_by_role("button", name="Forecast").click()
    region = page.get_by_role("region", name="Forecast")
    expect(region).to_contain_text("impressions to", timeout=15_000)
    shown = region.locator("[data-forecast]").get_attribute("data-forecast")
    assert int(shown) == expected["forecast_impressions"]
    expect(region).to_contain_text(f"{expected['matched_requests']:,} matching requests")
