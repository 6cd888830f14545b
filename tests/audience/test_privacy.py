"""Privacy floor: tiny segments cannot be targeted; small counts are hidden everywhere."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from tests.audience.conftest import build, population

from adtarget.api.app import create_app
from adtarget.api.deps import app_session_factory
from adtarget.audience.build import SnapshotBuilder
from adtarget.audience.privacy import check_targetable
from adtarget.audience.store import SnapshotStore
from adtarget.errors import InvalidValue
from adtarget.ingest.publish import refresh_segment_sizes
from adtarget.rules.parse import parse
from adtarget.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def test_check_targetable_unit() -> None:
    rule = parse('segment("big") and not segment("tiny") or segment("fresh")')
    check_targetable(rule, {"big": 500, "tiny": 100, "fresh": None}, 100)
    with pytest.raises(InvalidValue, match="'tiny' has fewer than 100 users") as info:
        check_targetable(rule, {"big": 500, "tiny": 99, "fresh": None}, 100)
    assert info.value.field == "targeting"


@pytest.fixture
def client(settings: Settings, started: Callable[..., TestClient]) -> tuple[FastAPI, TestClient]:
    app = create_app(settings)
    return app, started(app, raise_server_exceptions=False)


def test_line_item_on_tiny_segment_is_refused(
    settings: Settings, client: tuple[FastAPI, TestClient]
) -> None:
    app, http = client
    for name in ("tiny", "big"):
        r = http.post("/v1/segments", json={"name": name, "kind": "list"})
        assert r.status_code == 201, r.text
    users = population(400, seed=3)
    store = SnapshotStore(settings.snapshots_dir)
    base = build(store, users)
    b = SnapshotBuilder(store=store, base=base, registry={}, mode="upsert")
    b.set_segment("tiny", [u["user_id"] for u in users[:5]])
    b.set_segment("big", [u["user_id"] for u in users[:300]])
    store.publish(b.finish())
    with app_session_factory(app)() as session, session.begin():
        assert refresh_segment_sizes(session, store)["tiny"] == 5
    adv = http.post("/v1/advertisers", json={"name": "Acme"}).json()
    camp = http.post(
        "/v1/campaigns",
        json={
            "advertiser_id": adv["id"],
            "name": "c",
            "budget_total": "100",
            "start": "2026-01-01T00:00:00Z",
            "end": "2027-01-01T00:00:00Z",
        },
    ).json()
    li = {"campaign_id": camp["id"], "name": "li", "priority": 1, "bid_cpm": "2"}
    r = http.post("/v1/line-items", json={**li, "targeting": 'segment("big") and segment("tiny")'})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "targeting" and "'tiny' has fewer than 100 users" in err["message"]
    r = http.post("/v1/line-items", json={**li, "targeting": 'segment("big")'})
    assert r.status_code == 201, r.text
    r = http.patch(f"/v1/line-items/{r.json()['id']}", json={"targeting": 'segment("tiny")'})
    assert r.status_code == 422 and "cannot be targeted" in r.json()["error"]["message"]
    # Sizing the tiny segment hides its count too.
    r = http.post("/v1/audiences/size", json={"rule": 'segment("tiny")'})
    assert r.json()["count"] is None and r.json()["below_threshold"] is True
    r = http.post("/v1/audiences/size", json={"rule": 'segment("big")'})
    assert r.json()["count"] == 300
