"""Who may forecast what: advertiser keys inside their own campaigns, competitors anonymised."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from adtarget.api.container import container_of
from adtarget.decision.request_store import SampledRequest
from adtarget.decision.request_stores import request_store_for


def _history(app: FastAPI) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    rows = [
        SampledRequest(yesterday.replace(hour=9).timestamp() + i, f"u{i}", {}, None, 1, (), 1.0)
        for i in range(40)
    ]
    request_store_for(container_of(app).settings).write(rows)


def _flight() -> dict[str, str]:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "start": (start + timedelta(days=1)).isoformat(),
        "end": (start + timedelta(days=2)).isoformat(),
    }


def test_advertiser_keys_forecast_only_inside_their_campaigns(
    app: FastAPI,
    client: TestClient,
    seed: Callable[..., dict[str, Any]],
    make_key: Callable[..., str],
) -> None:
    acme, rival = seed("acme"), seed("rival")
    for kind, obj in (("campaigns", rival["campaign"]), ("line-items", rival["line_item"])):
        assert client.patch(f"/v1/{kind}/{obj['id']}", json={"status": "active"}).is_success
    _history(app)
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    mine = {"Authorization": f"Bearer {make_key('advertiser', acme['advertiser']['id'])}"}
    body = {"targeting": "", "priority": 8, "bid_cpm": 1.0, **_flight()}

    r = client.post("/v1/forecast", json=body, headers=mine)
    assert r.status_code == 422 and r.json()["error"]["field"] == "campaign_id"
    r = client.post(
        "/v1/forecast", json={**body, "campaign_id": rival["campaign"]["id"]}, headers=mine
    )
    assert r.status_code == 404
    r = client.post("/v1/forecast", json={"line_item_id": rival["line_item"]["id"]}, headers=mine)
    assert r.status_code == 404

    r = client.post(
        "/v1/forecast", json={**body, "campaign_id": acme["campaign"]["id"]}, headers=mine
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["matched_requests"] == 40
    assert answer["forecast_impressions"] == 0  # the rival (priority 2) takes every request
    assert answer["contended"] == [
        {
            "line_item_id": None,
            "advertiser_id": None,
            "other_advertisers": True,
            "impressions_lost_to_it": 40,
            "impressions_taken_from_it": 0,
        }
    ]
    # an admin sees who it is
    r = client.post(
        "/v1/forecast", json={**body, "campaign_id": acme["campaign"]["id"]}, headers=admin
    )
    assert r.json()["contended"][0]["line_item_id"] == rival["line_item"]["id"]


def test_decision_keys_may_not_forecast(client: TestClient, make_key: Callable[..., str]) -> None:
    headers = {"Authorization": f"Bearer {make_key('decisions')}"}
    r = client.post("/v1/forecast", json={"bid_cpm": 1, **_flight()}, headers=headers)
    assert r.status_code == 403
