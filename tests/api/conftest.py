"""Fixtures for the HTTP tests: an app on a fresh SQLite catalog, a client, keys, seed objects."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from adtarget.api.app import create_app
from adtarget.api.auth import create_key
from adtarget.api.deps import app_key_resolver, app_session_factory
from adtarget.settings import Settings

with warnings.catch_warnings():  # starlette's note about httpx2; the client works as is
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

FLIGHT = {"start": "2026-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}


@pytest.fixture
def app(settings: Settings, started: Callable[..., TestClient]) -> FastAPI:
    """A fresh, started app (open mode until a key is made); it is shut down after the test."""
    app = create_app(settings)
    started(app)
    return app


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    """A client that returns every response (no server exception re-raised)."""
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def make_key(app: FastAPI) -> Callable[..., str]:
    """Create an API key in the app's catalog and return ``Authorization`` headers' key."""

    def make(role: str, advertiser_id: int | None = None) -> str:
        factory = app_session_factory(app)
        with factory() as session, session.begin():
            _row, key = create_key(session=session, role=role, advertiser_id=advertiser_id)
        app_key_resolver(app).invalidate()
        return key

    return make


def _seed_advertiser(
    client: TestClient, name: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An advertiser with a campaign, a line item, a creative attached and a segment."""
    h = headers or {}
    adv = client.post("/v1/advertisers", json={"name": name}, headers=h).json()
    camp = client.post(
        "/v1/campaigns",
        json={"advertiser_id": adv["id"], "name": f"{name}-c", "budget_total": 1000, **FLIGHT},
        headers=h,
    ).json()
    li = client.post(
        "/v1/line-items",
        json={
            "campaign_id": camp["id"],
            "name": f"{name}-li",
            "targeting": "",
            "priority": 2,
            "bid_cpm": 3.5,
        },
        headers=h,
    ).json()
    cr = client.post(
        "/v1/creatives",
        json={"advertiser_id": adv["id"], "name": f"{name}-cr", "format": "video_15s"},
        headers=h,
    ).json()
    attach = client.post(
        f"/v1/line-items/{li['id']}/creatives", json={"creative_id": cr["id"]}, headers=h
    )
    assert attach.status_code == 201, attach.text
    seg = client.post(
        "/v1/segments",
        json={"name": f"{name}_seg", "kind": "list", "advertiser_id": adv["id"]},
        headers=h,
    ).json()
    return {"advertiser": adv, "campaign": camp, "line_item": li, "creative": cr, "segment": seg}


def make_live(client: TestClient, items: list[tuple[str, str, int]]) -> dict[str, Any]:
    """An active campaign with one creative and ``(name, rule, priority)`` active line items.

    Registers the ``country`` dimension if absent (an upload may have registered it).
    """
    dim = client.post("/v1/dimensions", json={"name": "country", "type": "category"})
    assert dim.status_code in (201, 409), dim.text
    adv = client.post("/v1/advertisers", json={"name": "acme"}).json()
    flight = {"start": "2026-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}
    camp = client.post(
        "/v1/campaigns",
        json={"advertiser_id": adv["id"], "name": "c", "budget_total": 1000, **flight},
    ).json()
    cr = client.post(
        "/v1/creatives", json={"advertiser_id": adv["id"], "name": "cr", "format": "video_15s"}
    ).json()
    made: dict[str, Any] = {"campaign": camp, "creative": cr}
    for name, rule, prio in items:
        li = client.post(
            "/v1/line-items",
            json={
                "campaign_id": camp["id"],
                "name": name,
                "targeting": rule,
                "priority": prio,
                "bid_cpm": 2.0,
            },
        ).json()
        client.post(f"/v1/line-items/{li['id']}/creatives", json={"creative_id": cr["id"]})
        assert client.patch(f"/v1/line-items/{li['id']}", json={"status": "active"}).is_success
        made[name] = li
    assert client.patch(f"/v1/campaigns/{camp['id']}", json={"status": "active"}).is_success
    return made


@pytest.fixture
def seed(client: TestClient) -> Callable[..., dict[str, Any]]:
    """``seed(name, headers=None)``: an advertiser with campaign, line item, creative, segment."""

    def make(name: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        return _seed_advertiser(client, name, headers)

    return make
