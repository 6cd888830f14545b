"""Stores picked from settings, and the engine the service builds from a real catalog."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from adtarget.catalog.db import open_catalog
from adtarget.catalog.tables import Advertiser, Campaign, Creative, LineItem, LineItemCreative
from adtarget.decision.counters import MemoryCounters, RedisCounters, SqliteCounters
from adtarget.decision.engine import DecisionEngine
from adtarget.decision.factory import counters_from_settings, profiles_from_settings
from adtarget.decision.models import DecisionRequest
from adtarget.decision.profiles import SnapshotProfileStore
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.delivery.service import DeliverySpend, ingest_events, open_event_store
from adtarget.errors import InvalidValue
from adtarget.settings import Settings


def test_stores_from_settings(settings: Settings) -> None:
    assert isinstance(counters_from_settings(settings), SqliteCounters)
    mem = settings.model_copy(update={"counter_store": "memory"})
    assert isinstance(counters_from_settings(mem), MemoryCounters)
    red = settings.model_copy(
        update={
            "counter_store": "redis",
            "profile_store": "redis",
            "redis_url": "redis://127.0.0.1:1/0",
        }
    )
    assert isinstance(counters_from_settings(red), RedisCounters)
    assert isinstance(profiles_from_settings(red), RedisProfileStore)
    assert isinstance(profiles_from_settings(settings), SnapshotProfileStore)
    with pytest.raises(InvalidValue) as e:
        counters_from_settings(settings.model_copy(update={"counter_store": "redis"}))
    assert e.value.field == "redis_url"


def test_engine_from_settings_serves_the_catalog(settings: Settings) -> None:
    factory = open_catalog(settings)
    now = datetime.now(UTC)
    with factory() as s:
        adv = Advertiser(name="A")
        s.add(adv)
        s.flush()
        camp = Campaign(
            advertiser_id=adv.id,
            name="C",
            status="active",
            budget_total=Decimal("100"),
            start=now - timedelta(days=1),
            end=now + timedelta(days=1),
        )
        s.add(camp)
        s.flush()
        cr = Creative(advertiser_id=adv.id, name="v", format="video_30s")
        li = LineItem(
            campaign_id=camp.id,
            name="L",
            status="active",
            priority=3,
            bid_cpm=Decimal("4.5"),
            targeting='device = "tv"',
            frequency_cap_count=1,
            frequency_cap_window_seconds=3600,
        )
        s.add_all([cr, li])
        s.flush()
        s.add(LineItemCreative(line_item_id=li.id, creative_id=cr.id))
        s.commit()
        li_id, cr_id, camp_id = li.id, cr.id, camp.id
    engine = DecisionEngine.from_settings(
        settings,
        session_factory=factory,
        spend=DeliverySpend(open_event_store(settings)),
        poll_seconds=60,
    )
    try:
        assert engine.status()["line_items"] == 1
        result = engine.decide(DecisionRequest("u1", context={"device": "tv"}))
        body = result.to_dict()
        assert [len(d.pop("decision_id")) for d in body["decisions"]] == [24]
        assert body == {
            "decisions": [
                {
                    "line_item_id": li_id,
                    "campaign_id": camp_id,
                    "creative_id": cr_id,
                    "priority": 3,
                    "bid_cpm": 4.5,
                    "creative": {"id": cr_id, "format": "video_30s", "attributes": {}},
                }
            ],
            "snapshot": None,
            "degraded": False,
        }
        # the line item cap (1 per hour) is kept in the SQLite counters
        assert engine.decide(DecisionRequest("u1", context={"device": "tv"})).decisions == []
        assert engine.decide(DecisionRequest("u1", context={"device": "pc"})).decisions == []
    finally:
        engine.close()


def _seed_one(settings: Settings) -> tuple[Any, dict[str, int]]:
    factory = open_catalog(settings)
    now = datetime.now(UTC)
    with factory() as s:
        adv = Advertiser(name="A")
        s.add(adv)
        s.flush()
        camp = Campaign(
            advertiser_id=adv.id,
            name="C",
            status="active",
            budget_total=Decimal("100"),
            pacing_mode="asap",
            start=now - timedelta(days=1),
            end=now + timedelta(days=1),
        )
        s.add(camp)
        s.flush()
        cr = Creative(advertiser_id=adv.id, name="v", format="video_30s")
        li = LineItem(
            campaign_id=camp.id,
            name="L",
            status="active",
            priority=3,
            bid_cpm=Decimal("4.5"),
            targeting='device = "tv"',
        )
        s.add_all([cr, li])
        s.flush()
        s.add(LineItemCreative(line_item_id=li.id, creative_id=cr.id))
        s.commit()
        return factory, {"li": li.id, "camp": camp.id, "adv": adv.id}


def test_catalog_change_reaches_decisions_through_the_background_refresh(
    settings: Settings,
) -> None:
    factory, ids = _seed_one(settings)
    engine = DecisionEngine.from_settings(
        settings,
        session_factory=factory,
        spend=DeliverySpend(open_event_store(settings)),
        poll_seconds=0.05,
    )
    tv = DecisionRequest("u1", context={"device": "tv"}, explain=True)
    try:
        assert [d.line_item_id for d in engine.decide(tv).decisions] == [ids["li"]]
        with factory() as s:
            li = s.get(LineItem, ids["li"])
            assert li is not None
            li.status = "paused"
            s.commit()
        t0 = time.monotonic()
        while engine.decide(tv).decisions and time.monotonic() - t0 < 20:
            time.sleep(0.01)
        lag = time.monotonic() - t0
        result = engine.decide(tv)
        assert result.decisions == []
        assert result.explain is not None
        assert result.explain["not_served"] == [
            {"line_item_id": ids["li"], "reason": "status", "detail": "line item is paused"}
        ]
        print(f"catalog change visible to decisions after {lag * 1000:.0f} ms (poll 50 ms)")
    finally:
        engine.close()


def test_budget_uses_delivered_spend_from_the_event_log(settings: Settings) -> None:
    factory, ids = _seed_one(settings)
    store = open_event_store(settings)
    spend = DeliverySpend(store, refresh_seconds=0.0, background=False)
    engine = DecisionEngine.from_settings(
        settings, session_factory=factory, spend=spend, poll_seconds=60
    )
    tv = DecisionRequest("u1", context={"device": "tv"}, explain=True)
    try:
        assert len(engine.decide(tv).decisions) == 1
        event = {
            "type": "impression",
            "ts": datetime.now(UTC).isoformat(),
            "user_id": "u1",
            "line_item_id": str(ids["li"]),
            "campaign_id": str(ids["camp"]),
            "advertiser_id": str(ids["adv"]),
        }
        ingest_events(store=store, events=[{**event, "event_id": "e1", "cost": 60.0}])
        assert len(engine.decide(tv).decisions) == 1  # 60 of 100 spent (asap: no pacing)
        ingest_events(store=store, events=[{**event, "event_id": "e2", "cost": 45.0}])
        result = engine.decide(tv)
        assert result.decisions == [] and result.explain is not None
        assert result.explain["not_served"] == [
            {
                "line_item_id": ids["li"],
                "reason": "budget",
                "detail": "campaign budget 100 spent (105)",
            }
        ]
    finally:
        engine.close()
        store.close()
