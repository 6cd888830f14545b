"""Both event stores (Parquet default, real PostgreSQL) under one contract.

The core claim: report counts equal a recomputation from the raw events, with duplicates
within a batch, across batches and after a restart, and with bad events mixed in.
"""

from __future__ import annotations

import random
from datetime import timedelta

from adtarget.delivery.reports import run_report
from adtarget.delivery.rollup import rebuild_rollups, sort_rollup
from adtarget.delivery.service import DeliverySpend, ingest_events
from adtarget.delivery.store import EventStore

from .conftest import (
    END_DAY,
    NOW,
    START_DAY,
    StoreFactory,
    bad_events,
    day_of,
    expected_counts,
    make_events,
)


def _report(store: EventStore, group_by: str, reach: bool = True) -> list[dict]:
    """With reach a store may scan the raw log; without it, it reads its rollups."""
    return run_report(
        store=store,
        start=START_DAY,
        end=END_DAY,
        group_by=group_by,
        metrics="requests,impressions,completes,clicks,spend" + (",reach" if reach else ""),
    )


def test_counts_equal_recomputation_with_duplicates_bad_events_and_restart(
    make_store: StoreFactory,
) -> None:
    events = make_events(600, seed=7)
    bad = bad_events()
    rng = random.Random(3)
    first, second = events[:350], events[350:]
    batch1 = first + rng.sample(first, 40) + bad[:6]  # duplicates within the batch
    rng.shuffle(batch1)
    store = make_store()
    r1 = ingest_events(store=store, events=batch1)
    assert (r1.accepted, r1.duplicates, len(r1.rejected)) == (350, 40, 6)
    # across batches: replay 100 old ones along with the new ones
    batch2 = second + rng.sample(first, 100) + bad[6:]
    r2 = ingest_events(store=store, events=batch2)
    assert (r2.accepted, r2.duplicates, len(r2.rejected)) == (250, 100, len(bad) - 6)
    store.close()
    # "restart": a new store object over the same data; a full replay is all duplicates
    store = make_store()
    r3 = ingest_events(store=store, events=events)
    assert (r3.accepted, r3.duplicates, r3.rejected) == (0, 600, [])

    want = expected_counts(events, lambda e: (e["campaign_id"], day_of(e)))
    for reach in (True, False):
        rows = _report(store, "campaign,day", reach)
        got = {(r["campaign_id"], r["day"]): r for r in rows}
        assert set(got) == set(want)
        for k, w in want.items():
            g = got[k]
            assert (g["requests"], g["impressions"], g["completes"], g["clicks"]) == (
                w["requests"],
                w["impressions"],
                w["completes"],
                w["clicks"],
            ), k
            assert round(g["spend"] * 1_000_000) == w["spend_micros"], k
            assert g.get("reach", len(w["users"])) == len(w["users"]), k
    assert store.scan().num_rows == 600


def test_incremental_rollups_equal_rebuild_from_raw_log(store: EventStore) -> None:
    events = make_events(500, seed=11)
    for i in range(0, 500, 120):
        ingest_events(store=store, events=events[i : i + 120] + events[: i // 4])
    incremental = sort_rollup(store.rollups())
    assert incremental.num_rows > 0
    rebuild_rollups(store=store)
    assert sort_rollup(store.rollups()).equals(incremental)


def test_reach_is_exact_unique_users_not_a_sum(store: EventStore) -> None:
    ts = NOW.isoformat()  # the top of this hour: today even at 00:xx UTC (an hour back is not)
    base = {
        "type": "impression",
        "ts": ts,
        "line_item_id": "l1",
        "campaign_id": "c1",
        "advertiser_id": "a1",
        "country": "US",
    }
    events = [
        {**base, "event_id": f"x{i}", "user_id": f"u{i % 3}", "device": "tv" if i % 2 else "mobile"}
        for i in range(12)
    ]
    ingest_events(store=store, events=events)
    total = run_report(
        store=store, start=END_DAY, end=END_DAY, group_by=[], metrics="impressions,reach"
    )
    assert total == [{"impressions": 12, "reach": 3}]
    by_device = run_report(
        store=store, start=END_DAY, end=END_DAY, group_by="device", metrics="reach"
    )
    assert [r["reach"] for r in by_device] == [3, 3]  # 6 overlapping users across devices


def test_spend_feed_matches_reports(store: EventStore) -> None:
    events = make_events(300, seed=5)
    ingest_events(store=store, events=events)
    spend = DeliverySpend(store, refresh_seconds=60)
    want = expected_counts(events, lambda e: e["line_item_id"])
    for li, w in want.items():
        assert round(spend.spend(li) * 1e6) == w["spend_micros"]
    by_camp = expected_counts(events, lambda e: e["campaign_id"])
    for camp, w in by_camp.items():
        assert round(spend.campaign_spend(camp) * 1e6) == w["spend_micros"]
    today = expected_counts(
        [e for e in events if day_of(e) == END_DAY.isoformat()], lambda e: e["campaign_id"]
    )
    for camp, w in today.items():
        assert round(spend.campaign_spend_today(camp, "UTC", now=NOW) * 1e6) == w["spend_micros"]
    assert spend.spend("no-such-line-item") == 0.0


def test_retention_drops_old_days_everywhere(store: EventStore) -> None:
    events = make_events(200, seed=9)
    ingest_events(store=store, events=events)
    store.retention_days = 1
    dropped = store.apply_retention(END_DAY)
    assert dropped and all(d < END_DAY - timedelta(days=1) for d in dropped)
    kept = [e for e in events if day_of(e) >= (END_DAY - timedelta(days=1)).isoformat()]
    assert store.scan().num_rows == len(kept)
    assert sum(store.rollups()["impressions"].to_pylist()) == sum(
        e["type"] == "impression" for e in kept
    )
    # an event older than the retention window is rejected, not silently re-counted
    old = [e for e in events if day_of(e) < (END_DAY - timedelta(days=1)).isoformat()][:1]
    result = ingest_events(store=store, events=old)
    assert result.accepted == 0 and result.rejected[0]["field"] == "ts"
