"""Delivery services: the store chosen by settings, and the cached spend feed for decisions."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta

import pytest

from adtarget.delivery.parquet_store import ParquetEventStore
from adtarget.delivery.service import DeliverySpend, ingest_events, open_event_store
from adtarget.errors import InvalidValue, StoreUnavailable
from adtarget.settings import Settings

from .conftest import END_DAY, NOW


def _spend_event(i: int, camp: str, cost: float, hours_ago: int) -> dict[str, object]:
    return {
        "event_id": f"s{i}",
        "type": "impression",
        "ts": (NOW - timedelta(hours=hours_ago)).isoformat(),
        "user_id": "u",
        "line_item_id": f"{camp}-l",
        "campaign_id": camp,
        "advertiser_id": "a",
        "cost": cost,
    }


def test_open_event_store_by_settings(settings: Settings) -> None:
    store = open_event_store(settings)
    assert isinstance(store, ParquetEventStore) and store.root == settings.events_dir
    assert store.retention_days == settings.events_retention_days
    store.close()
    with pytest.raises(InvalidValue) as err:
        open_event_store(Settings(data_dir=settings.data_dir, events_store="postgres"))
    assert err.value.field == "events_url"


@pytest.mark.postgres
def test_open_postgres_store_by_settings(settings: Settings, pg_url: str) -> None:
    from adtarget.delivery.postgres import PostgresEventStore

    store = open_event_store(
        Settings(
            data_dir=settings.data_dir,
            events_store="postgres",
            events_url=pg_url,
            events_retention_days=30,
        )
    )
    assert isinstance(store, PostgresEventStore) and store.retention_days == 30
    store.close()


def test_spend_is_cached_between_refreshes(settings: Settings) -> None:
    store = open_event_store(settings)
    clock = [0.0]
    spend = DeliverySpend(
        store, refresh_seconds=2.0, max_stale_seconds=10.0, clock=lambda: clock[0], background=False
    )
    ingest_events(store=store, events=[_spend_event(1, "c1", 1.25, 0)])
    assert spend.campaign_spend("c1") == 1.25
    ingest_events(store=store, events=[_spend_event(2, "c1", 0.75, 0)])
    clock[0] = 1.0
    assert spend.campaign_spend("c1") == 1.25  # still the cached figure
    clock[0] = 2.5
    assert spend.campaign_spend("c1") == 2.0 and spend.spend("c1-l") == 2.0
    assert spend.spend_by_campaign() == {"c1": 2.0}
    assert spend.spend_by_line_item() == {"c1-l": 2.0}
    # the store goes away: stale figures for a while, then a clear StoreUnavailable
    store.close()
    clock[0] = 5.0
    assert spend.campaign_spend("c1") == 2.0
    clock[0] = 13.0
    with pytest.raises(StoreUnavailable):
        spend.campaign_spend("c1")


def test_background_refresh_does_not_block(settings: Settings) -> None:
    store = open_event_store(settings)
    clock = [0.0]
    spend = DeliverySpend(store, refresh_seconds=1.0, clock=lambda: clock[0])
    assert spend.spend("x-l") == 0.0
    ingest_events(store=store, events=[{**_spend_event(1, "x", 4.0, 0), "line_item_id": "x-l"}])
    clock[0] = 1.5
    spend.spend("x-l")  # starts the reload; the answer may still be the old one
    for _ in range(200):
        if spend.spend("x-l") == 4.0:
            break
        threading.Event().wait(0.01)
    assert spend.spend("x-l") == 4.0
    store.close()


def test_spend_today_respects_the_time_zone(settings: Settings) -> None:
    store = open_event_store(settings)
    day = datetime.combine(END_DAY, time(0), UTC)
    events = [
        {**_spend_event(1, "c1", 1.0, 0), "ts": (day + timedelta(hours=20)).isoformat()},
        {**_spend_event(2, "c1", 2.0, 0), "ts": (day + timedelta(hours=2)).isoformat()},
    ]
    assert ingest_events(store=store, events=events).accepted == 2
    spend = DeliverySpend(store)
    late = day + timedelta(hours=23, minutes=30)
    assert spend.campaign_spend_today("c1", "UTC", now=late) == 3.0
    # in UTC+10 it is already tomorrow: local midnight was 14:00 UTC, so only the 20:00 event
    assert spend.campaign_spend_today("c1", "Etc/GMT-10", now=late) == 1.0
    assert spend.line_item_spend_today("c1-l", "Etc/GMT-10", now=late) == 1.0
    assert spend.campaign_spend_today("other", "UTC", now=late) == 0.0
    store.close()
