"""Stores picked from settings, and the engine the service builds from a real catalog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from adtarget.catalog.db import open_catalog
from adtarget.catalog.tables import Advertiser, Campaign, Creative, LineItem, LineItemCreative
from adtarget.decision.counters import MemoryCounters, RedisCounters, SqliteCounters
from adtarget.decision.engine import DecisionEngine
from adtarget.decision.factory import counters_from_settings, profiles_from_settings
from adtarget.decision.models import DecisionRequest
from adtarget.decision.profiles import RedisProfileStore, SnapshotProfileStore
from adtarget.errors import InvalidValue
from adtarget.settings import Settings


def test_stores_from_settings(settings: Settings) -> None:
    assert isinstance(counters_from_settings(settings), SqliteCounters)
    mem = settings.model_copy(update={"counter_store": "memory"})
    assert isinstance(counters_from_settings(mem), MemoryCounters)
    red = settings.model_copy(update={"counter_store": "redis", "profile_store": "redis",
                                      "redis_url": "redis://127.0.0.1:1/0"})
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
        camp = Campaign(advertiser_id=adv.id, name="C", status="active",
                        budget_total=Decimal("100"), start=now - timedelta(days=1),
                        end=now + timedelta(days=1))
        s.add(camp)
        s.flush()
        cr = Creative(advertiser_id=adv.id, name="v", format="video_30s")
        li = LineItem(campaign_id=camp.id, name="L", status="active", priority=3,
                      bid_cpm=Decimal("4.5"), targeting='device = "tv"',
                      frequency_cap_count=1, frequency_cap_window_seconds=3600)
        s.add_all([cr, li])
        s.flush()
        s.add(LineItemCreative(line_item_id=li.id, creative_id=cr.id))
        s.commit()
        li_id, cr_id, camp_id = li.id, cr.id, camp.id
    engine = DecisionEngine.from_settings(settings, session_factory=factory, poll_seconds=60)
    try:
        assert engine.status()["line_items"] == 1
        result = engine.decide(DecisionRequest("u1", context={"device": "tv"}))
        assert result.to_dict() == {
            "decisions": [{"line_item_id": li_id, "campaign_id": camp_id,
                           "creative_id": cr_id, "priority": 3, "bid_cpm": 4.5}],
            "snapshot": None, "degraded": False}
        # the line item cap (1 per hour) is kept in the SQLite counters
        assert engine.decide(DecisionRequest("u1", context={"device": "tv"})).decisions == []
        assert engine.decide(DecisionRequest("u1", context={"device": "pc"})).decisions == []
    finally:
        engine.close()
