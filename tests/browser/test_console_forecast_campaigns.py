"""The forecast on the audience page for an advertiser key: a campaign picker listing only that
advertiser's campaigns, and the forecast run as a job inside the one picked."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from tests.browser.test_console_forecast import RULE, _log_history

expect = pytest.importorskip("playwright.sync_api", reason="playwright not installed").expect

if TYPE_CHECKING:
    from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser


def test_an_advertiser_forecasts_inside_its_own_campaigns(
    page: Any, live_server: LiveServer
) -> None:
    _log_history(live_server)
    now = datetime.now(UTC)
    flight = {"start": (now - timedelta(days=1)).isoformat(),
              "end": (now + timedelta(days=60)).isoformat()}  # fmt: skip
    with live_server.api() as api:
        other = api.post("/v1/advertisers", json={"name": "Not Yours Ltd"}).json()
        theirs = api.post("/v1/campaigns", json={"advertiser_id": other["id"], "name": "Theirs",
                                                 "budget_total": 100, **flight}).json()  # fmt: skip
        mine = api.post("/v1/campaigns", json={"advertiser_id": 1, "name": "Forecast me",
                                               "budget_total": 500, **flight}).json()  # fmt: skip
        own = api.get("/v1/campaigns", params={"advertiser_id": 1, "limit": 1000}).json()
        key = api.post("/v1/keys", json={"role": "advertiser", "advertiser_id": 1}).json()["key"]
    expected_names = [
        f"{c['name']} (#{c['id']})" for c in own["campaigns"] if c["status"] != "archived"
    ]
    start = (now + timedelta(days=1)).date()
    body = {
        "targeting": RULE, "campaign_id": mine["id"], "priority": 1, "bid_cpm": 4,
        "start": f"{start.isoformat()}T00:00:00Z",
        "end": f"{(start + timedelta(days=7)).isoformat()}T00:00:00Z",
    }  # fmt: skip
    with live_server.api() as api:
        expected = api.post(
            "/v1/forecast", json=body, headers={"Authorization": f"Bearer {key}"}
        ).json()
    assert expected["forecast_impressions"] > 0, expected

    page.goto(f"{live_server.url}/console#/audience")
    page.get_by_role("textbox", name="API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("textbox", name="Rule").fill(RULE)
    expect(page.get_by_role("status")).to_contain_text(re.compile(r"\d+ users"))
    picker = page.get_by_role("combobox", name="Campaign")
    expect(picker.locator("option")).to_have_text(expected_names)  # only its own, no "none"
    assert f"Theirs (#{theirs['id']})" not in picker.locator("option").all_inner_texts()
    picker.select_option(label=f"Forecast me (#{mine['id']})")
    page.get_by_label("Priority").fill("1")
    page.get_by_label("Bid CPM").fill("4")
    page.get_by_role("button", name="Forecast").click()
    region = page.get_by_role("region", name="Forecast")
    expect(region).to_contain_text("impressions to", timeout=15_000)
    shown = region.locator("[data-forecast]").get_attribute("data-forecast")
    assert int(shown) == expected["forecast_impressions"]
    expect(page.get_by_role("progressbar", name="Forecast progress")).to_be_hidden()
