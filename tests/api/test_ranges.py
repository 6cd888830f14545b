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
