"""``POST /v1/events`` and ``GET /v1/reports`` through HTTP, with the real SQLite catalog."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from fastapi import FastAPI

from adtarget.api.deps import Principal, get_principal
from adtarget.settings import Settings

from .conftest import NOW

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TODAY = NOW.date().isoformat()


def _app(settings: Settings) -> tuple[FastAPI, bool]:
    """The full app when every router exists yet; otherwise this router on a bare app."""
    try:
        from adtarget.api.app import create_app

        return create_app(settings), True
    except ImportError:
        from adtarget.api.errors import install_error_handlers
        from adtarget.api.routes.events import router

        app = FastAPI()
        app.state.settings = settings
        install_error_handlers(app)
        app.include_router(router)
        return app, False


def _seed_catalog(settings: Settings) -> dict[str, int]:
    """Two advertisers, one campaign and line item each, written straight to the catalog."""
    from adtarget.catalog.db import open_catalog
    from adtarget.catalog.tables import Advertiser, Campaign, LineItem

    ids: dict[str, int] = {}
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
    with open_catalog(settings)() as session, session.begin():
        for name in ("a", "b"):
            adv = Advertiser(name=f"adv-{name}")
            session.add(adv)
            session.flush()
            camp = Campaign(
                advertiser_id=adv.id,
                name=f"camp-{name}",
                budget_total=Decimal(100),
                start=start,
                end=end,
            )
            session.add(camp)
            session.flush()
            li = LineItem(campaign_id=camp.id, name=f"li-{name}", bid_cpm=Decimal(2))
            session.add(li)
            session.flush()
            ids |= {f"adv_{name}": adv.id, f"camp_{name}": camp.id, f"li_{name}": li.id}
    return ids


@pytest.fixture
def setup(
    settings: Settings, started: Callable[..., TestClient]
) -> tuple[TestClient, FastAPI, dict[str, int], bool]:
    settings.max_body_bytes = 64 * 1024
    ids = _seed_catalog(settings)
    app, full = _app(settings)
    return started(app, raise_server_exceptions=False), app, ids, full


def _ev(i: int, li: int, etype: str = "impression", **extra: Any) -> dict[str, Any]:
    ts = (NOW.replace(hour=1) + timedelta(minutes=i % 60)).isoformat()
    return {
        "event_id": f"h{i}",
        "type": etype,
        "ts": ts,
        "user_id": f"u{i % 5}",
        "line_item_id": li,
        "cost": 0.01,
        "country": "US",
        "device": "tv",
        **extra,
    }


def test_post_json_and_ndjson(setup: tuple[TestClient, FastAPI, dict[str, int], bool]) -> None:
    client, _, ids, _ = setup
    events = [_ev(i, ids["li_a"]) for i in range(10)] + [_ev(3, ids["li_a"])]
    events += [
        _ev(50, 99999),
        _ev(51, ids["li_a"], campaign_id=str(ids["camp_b"])),
        _ev(52, ids["li_a"], type="view"),
    ]
    r = client.post("/v1/events", json=events)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"]) == (10, 1)
    assert [(x["index"], x["field"]) for x in body["rejected"]] == [
        (11, "line_item_id"),
        (12, "campaign_id"),
        (13, "type"),
    ]

    lines = [orjson.dumps(_ev(i, ids["li_b"], "click")) for i in range(100, 104)]
    lines.insert(2, b"{not json")
    r = client.post(
        "/v1/events",
        content=b"\n".join(lines) + b"\n",
        headers={"content-type": "application/x-ndjson"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 4
    [bad] = r.json()["rejected"]
    assert bad["index"] == 2 and bad["field"] == "event" and "not valid JSON" in bad["reason"]


def test_bad_bodies(setup: tuple[TestClient, FastAPI, dict[str, int], bool]) -> None:
    client, _, ids, _ = setup
    r = client.post("/v1/events", json={"event_id": "x"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "body"
    big = [_ev(i, ids["li_a"], dims={"pad": "x" * 200}) for i in range(400)]
    r = client.post("/v1/events", json=big)
    assert r.status_code == 413, r.text


def test_reports_json_csv_and_advertiser_scope(
    setup: tuple[TestClient, FastAPI, dict[str, int], bool],
) -> None:
    client, app, ids, full = setup
    client.post(
        "/v1/events",
        json=[_ev(i, ids["li_a"]) for i in range(6)]
        + [_ev(100 + i, ids["li_b"]) for i in range(3)]
        + [_ev(200, ids["li_a"], "click")],
    )
    q = {
        "from": TODAY,
        "to": TODAY,
        "group_by": "advertiser,day",
        "metrics": "impressions,clicks,ctr,spend,reach",
    }
    r = client.get("/v1/reports", params=q)
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert [(x["advertiser_id"], x["impressions"], x["clicks"]) for x in rows] == [
        (str(ids["adv_a"]), 6, 1),
        (str(ids["adv_b"]), 0 + 3, 0),
    ]
    assert rows[0]["ctr"] == pytest.approx(1 / 6, abs=1e-6) and rows[0]["reach"] == 5

    r = client.get("/v1/reports", params={**q, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(r.text)))
    assert [p["impressions"] for p in parsed] == ["6", "3"]

    r = client.get("/v1/reports", params={**q, "metrics": "impressions,profit"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "metrics"

    app.dependency_overrides[get_principal] = lambda: Principal(
        actor="k", role="advertiser", advertiser_id=ids["adv_b"]
    )
    r = client.get("/v1/reports", params={**q, "advertiser_id": str(ids["adv_a"])})
    assert r.status_code == 200
    assert [x["advertiser_id"] for x in r.json()["rows"]] == [str(ids["adv_b"])]
    if full:  # the app's router dependency: advertisers read reports but cannot post events
        r = client.post("/v1/events", json=[_ev(900, ids["li_b"])])
        assert r.status_code == 403


def test_real_advertiser_key_sees_only_its_own_advertiser(
    settings: Settings, started: Callable[..., TestClient]
) -> None:
    """Keys made by ``api.auth.create_key`` and resolved by the app's own auth dependencies."""
    from adtarget.api.app import create_app
    from adtarget.api.auth import create_key
    from adtarget.catalog.db import open_catalog

    ids = _seed_catalog(settings)
    with open_catalog(settings)() as session, session.begin():
        _, ad_server = create_key(session=session, role="decisions")
        _, adv_b = create_key(session=session, role="advertiser", advertiser_id=ids["adv_b"])
        _, reader = create_key(session=session, role="reader")
    client = started(create_app(settings), raise_server_exceptions=False)
    events = [_ev(i, ids["li_a"]) for i in range(4)] + [_ev(10 + i, ids["li_b"]) for i in range(3)]
    r = client.post("/v1/events", json=events, headers={"Authorization": f"Bearer {ad_server}"})
    assert r.status_code == 200 and r.json()["accepted"] == 7, r.text
    q = {"from": TODAY, "to": TODAY, "group_by": "advertiser", "metrics": "impressions"}
    assert client.get("/v1/reports", params=q).status_code == 401
    for params in (q, {**q, "advertiser_id": str(ids["adv_a"])}):
        r = client.get("/v1/reports", params=params, headers={"Authorization": f"Bearer {adv_b}"})
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == [{"advertiser_id": str(ids["adv_b"]), "impressions": 3}]
    r = client.get("/v1/reports", params=q, headers={"Authorization": f"Bearer {reader}"})
    assert [row["impressions"] for row in r.json()["rows"]] == [4, 3]
    r = client.post("/v1/events", json=events, headers={"Authorization": f"Bearer {adv_b}"})
    assert r.status_code == 403


def test_reports_default_to_the_last_7_days_and_group_by_geo(
    setup: tuple[TestClient, FastAPI, dict[str, int], bool],
) -> None:
    client, _, ids, _ = setup
    now = datetime.now(UTC)
    old = (now - timedelta(days=10)).isoformat()
    events = [_ev(i, ids["li_a"], ts=now.isoformat()) for i in range(4)]
    events += [_ev(10 + i, ids["li_a"], ts=now.isoformat(), country="CA") for i in range(2)]
    events += [_ev(20 + i, ids["li_a"], ts=old) for i in range(5)]  # outside the window
    assert client.post("/v1/events", json=events).json()["accepted"] == 11
    r = client.get("/v1/reports", params={"group_by": "geo", "metrics": "impressions"})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [
        {"country": "CA", "impressions": 2},
        {"country": "US", "impressions": 4},
    ]
