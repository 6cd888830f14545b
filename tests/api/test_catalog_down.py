"""The catalog database goes away under a running app: decisions keep answering, never a 500.

The catalog here is the real SQLite file; "down" is that file replaced by a directory (and the
connection pool dropped), so every new connection really fails, as with a lost database server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from adtarget.api.container import container_of
from adtarget.api.deps import app_key_resolver, app_session_factory
from adtarget.settings import Settings

FLIGHT = {"start": "2026-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}


def _seed_live_line_item(client: TestClient, admin: dict[str, str]) -> int:
    adv = client.post("/v1/advertisers", json={"name": "acme"}, headers=admin).json()
    camp = client.post(
        "/v1/campaigns",
        json={"advertiser_id": adv["id"], "name": "c", "budget_total": 1000, **FLIGHT},
        headers=admin,
    ).json()
    cr = client.post(
        "/v1/creatives",
        json={"advertiser_id": adv["id"], "name": "cr", "format": "video_15s"},
        headers=admin,
    ).json()
    li = client.post(
        "/v1/line-items",
        json={
            "campaign_id": camp["id"],
            "name": "all",
            "targeting": "",
            "priority": 1,
            "bid_cpm": 2.0,
        },
        headers=admin,
    ).json()
    client.post(
        f"/v1/line-items/{li['id']}/creatives", json={"creative_id": cr["id"]}, headers=admin
    )
    for path in (f"/v1/line-items/{li['id']}", f"/v1/campaigns/{camp['id']}"):
        assert client.patch(path, json={"status": "active"}, headers=admin).is_success
    return int(li["id"])


def _age_key_cache(app: FastAPI) -> None:
    """Make every cached key lookup due for a re-check, as after the cache's TTL."""
    resolver: Any = app_key_resolver(app)
    resolver._cache.clear()  # the fresh TTL cache; the last-known principals stay (stale)
    resolver._any_keys = None


def test_decisions_survive_a_lost_catalog_and_nothing_is_a_500(
    app: FastAPI, client: TestClient, settings: Settings, make_key: Callable[..., str]
) -> None:
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    ad_server = {"Authorization": f"Bearer {make_key('decisions')}"}
    stranger = {"Authorization": "Bearer never-issued-key"}
    li = _seed_live_line_item(client, admin)
    container_of(app).decisions.engine.index_holder.refresh()
    body = {"user_id": "u1", "context": {}, "limit": 1}
    first = client.post("/v1/decisions", json=body, headers=ad_server)
    assert first.status_code == 200 and first.json()["decisions"][0]["line_item_id"] == li

    catalog = settings.data_dir / "catalog.sqlite3"
    moved = Path(f"{catalog}.away")
    os.replace(catalog, moved)
    catalog.mkdir()
    app_session_factory(app).kw["bind"].dispose()
    _age_key_cache(app)
    try:
        again = client.post("/v1/decisions", json=body, headers=ad_server)
        assert again.status_code == 200, again.text  # known key, index still in memory
        assert again.json()["decisions"][0]["line_item_id"] == li
        unknown = client.post("/v1/decisions", json=body, headers=stranger)
        assert unknown.status_code == 503, unknown.text
        assert unknown.json()["error"]["field"] == "authorization"
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
        assert ready.json()["checks"]["catalog"]["ok"] is False
        listing = client.get("/v1/campaigns", headers=admin)
        assert listing.status_code == 503 and "error" in listing.json(), listing.text
    finally:
        catalog.rmdir()
        os.replace(moved, catalog)
        app_session_factory(app).kw["bind"].dispose()
    _age_key_cache(app)
    assert client.get("/v1/campaigns", headers=admin).status_code == 200
    assert client.post("/v1/decisions", json=body, headers=stranger).status_code == 401
