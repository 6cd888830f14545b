"""Every integer and number in a body has a range: outside it is a 422 naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import FLIGHT

HUGE = 99999999999999999999


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PATCH", "/v1/campaigns/{campaign}", {"name": "x", "version": HUGE}, "version"),
        (
            "PATCH",
            "/v1/campaigns/{campaign}",
            {"frequency_cap": {"count": HUGE, "window_seconds": 1}},
            "frequency_cap.count",
        ),
        (
            "POST",
            "/v1/campaigns",
            {"advertiser_id": HUGE, "name": "c", "budget_total": 1, **FLIGHT},
            "advertiser_id",
        ),
        (
            "POST",
            "/v1/campaigns",
            {"advertiser_id": 1, "name": "c", "budget_total": 1e300, **FLIGHT},
            "budget_total",
        ),
        ("POST", "/v1/line-items", {"campaign_id": HUGE, "name": "l", "bid_cpm": 1}, "campaign_id"),
        ("POST", "/v1/segments", {"name": "s", "kind": "list", "ttl_seconds": HUGE}, "ttl_seconds"),
        (
            "POST",
            "/v1/segments",
            {"name": "s", "kind": "list", "advertiser_id": -HUGE},
            "advertiser_id",
        ),
        (
            "POST",
            "/v1/creatives",
            {"advertiser_id": HUGE, "name": "c", "format": "video_15s"},
            "advertiser_id",
        ),
    ],
)
def test_out_of_range_is_422_naming_the_field(
    client: TestClient, seed: Any, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    made = seed("acme")
    resp = client.request(method, path.format(campaign=made["campaign"]["id"]), json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == field, resp.text


BAD_DECIMALS = ["NaN", "Infinity", "-1", "1e400", "1.1234567", "abc", "", True, [1]]


@pytest.mark.parametrize("value", BAD_DECIMALS, ids=repr)
@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/campaigns", {"name": "c", **FLIGHT}, "budget_total"),
        ("PATCH", "/v1/campaigns/{campaign}", {}, "budget_daily"),
        ("POST", "/v1/line-items", {"name": "l", "priority": 1}, "bid_cpm"),
        ("PATCH", "/v1/line-items/{line_item}", {}, "budget_total"),
        ("POST", "/v1/forecast", {"priority": 8, **FLIGHT}, "bid_cpm"),
        ("POST", "/v1/forecast", {"line_item_id": 0, "changes": {}}, "changes.bid_cpm"),
    ],
)
def test_decimal_fields_refuse_what_is_not_a_sane_amount(
    client: TestClient,
    seed: Any,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
    value: Any,
) -> None:
    """Prices and budgets are finite, non-negative, at most 6 decimal places and 18 digits, and
    numbers (a numeric string is read as its number): anything else is a 422 naming the field."""
    made = seed("acme")
    ids = {"advertiser_id": made["advertiser"]["id"], "campaign_id": made["campaign"]["id"]}
    full = {**body, field.split(".")[-1]: value} if "changes" not in body else body
    if "changes" in body:
        full = {"line_item_id": made["line_item"]["id"], "changes": {"bid_cpm": value}}
    elif method == "POST" and path == "/v1/campaigns":
        full = {**full, "advertiser_id": ids["advertiser_id"]}
    elif path in ("/v1/line-items", "/v1/forecast"):
        full = {**full, "campaign_id": ids["campaign_id"]}
    url = path.format(campaign=made["campaign"]["id"], line_item=made["line_item"]["id"])
    resp = client.request(method, url, json=full)
    assert resp.status_code == 422, (value, resp.text)
    assert resp.json()["error"]["field"] == field, resp.text
