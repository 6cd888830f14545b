"""PostgreSQL store specifics, on the real server: day partitions, retention, daily_stats."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest

from adtarget.delivery.service import ingest_events
from adtarget.errors import StoreUnavailable

from .conftest import END_DAY, make_events

pytestmark = pytest.mark.postgres


def _partitions(store: object) -> list[str]:
    rows = store.connection.execute(  # type: ignore[attr-defined]
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'delivery_events' "
        "ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def test_events_table_is_range_partitioned_by_day(pg_url: str) -> None:
    from adtarget.delivery.postgres import PostgresEventStore

    store = PostgresEventStore(pg_url)
    row = store.connection.execute(
        "SELECT partstrat, a.attname FROM pg_partitioned_table t "
        "JOIN pg_class c ON c.oid = t.partrelid "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = t.partattrs[0] "
        "WHERE c.relname = 'delivery_events'"
    ).fetchone()
    assert row == ("r", "day")
    events = make_events(100, seed=1)
    ingest_events(store=store, events=events)
    assert _partitions(store) == sorted(
        {f"delivery_events_{e['ts'][:10].replace('-', '')}" for e in events}
    )
    store.close()


def test_create_ahead_and_drop_before(pg_url: str) -> None:
    from adtarget.delivery.postgres import (
        PostgresEventStore,
        drop_partitions_before,
        ensure_partitions,
    )

    store = PostgresEventStore(pg_url)
    conn = store.connection
    start = date(2026, 3, 1)
    made = ensure_partitions(conn, start, 6)
    assert len(made) == 7 and ensure_partitions(conn, start, 6) == []  # idempotent
    assert _partitions(store)[0] == "delivery_events_20260301"
    assert _partitions(store)[-1] == "delivery_events_20260307"
    dropped = drop_partitions_before(conn, date(2026, 3, 4))
    assert dropped == [date(2026, 3, d) for d in (1, 2, 3)]
    assert _partitions(store) == [f"delivery_events_202603{d:02d}" for d in range(4, 8)]
    store.close()


def test_retention_through_the_store_drops_partitions(pg_url: str) -> None:
    from adtarget.delivery.postgres import PostgresEventStore

    store = PostgresEventStore(pg_url, retention_days=1)
    store.retention_days = 400
    ingest_events(store=store, events=make_events(200, seed=2))
    store.retention_days = 1
    store.apply_retention(END_DAY)
    cutoff = (END_DAY - timedelta(days=1)).strftime("%Y%m%d")
    assert all(p.rsplit("_", 1)[1] >= cutoff for p in _partitions(store))
    ahead = (END_DAY + timedelta(days=7)).strftime("%Y%m%d")
    assert _partitions(store)[-1] == f"delivery_events_{ahead}"  # created a week ahead
    low = store.connection.execute("SELECT min(day) FROM daily_stats").fetchone()
    assert low is not None and low[0] >= END_DAY - timedelta(days=1)
    store.close()


def test_daily_stats_equal_rebuild_and_concurrent_dedup(pg_url: str) -> None:
    from adtarget.delivery.postgres import PostgresEventStore

    events = make_events(600, seed=3)
    stores = [PostgresEventStore(pg_url) for _ in range(2)]
    accepted = [0, 0]

    def run(k: int) -> None:
        for i in range(0, 600, 100):
            chunk = events[i : i + 100] if k == 0 else events[max(0, i - 50) : i + 50]
            accepted[k] += ingest_events(store=stores[k], events=chunk).accepted

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(accepted) == 600
    daily = stores[0].daily_rollups()
    assert sum(r[7] for r in daily) == sum(e["type"] == "decision" for e in events)
    stores[0].rebuild_rollups()
    assert stores[0].daily_rollups() == daily
    for s in stores:
        s.close()


def test_reconnects_after_the_server_drops_the_connection(pg_url: str) -> None:
    """A killed backend (restart, failover) costs one reconnect, not a dead store."""
    import psycopg

    from adtarget.delivery.postgres import PostgresEventStore, plain_url

    store = PostgresEventStore(pg_url)
    events = make_events(200, seed=4)
    assert ingest_events(store=store, events=events[:100]).accepted == 100
    pid = store.connection.info.backend_pid
    with psycopg.connect(plain_url(pg_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    result = ingest_events(store=store, events=events)  # the first statement hits the dead link
    assert (result.accepted, result.duplicates) == (100, 100)
    assert store.connection.info.backend_pid != pid
    assert store.scan().num_rows == 200
    store.close()
    with pytest.raises(StoreUnavailable):
        store.spend_totals()


def _fail_appends(store: object, times: int) -> None:
    """The next ``times`` appends fail as PostgreSQL deadlock victims (SQLSTATE 40P01); a
    sequence counts them because it is not rolled back with the failed transaction."""
    conn = store.connection  # type: ignore[attr-defined]
    with conn.transaction():
        conn.execute("DROP SEQUENCE IF EXISTS deadlock_victims")
        conn.execute("CREATE SEQUENCE deadlock_victims")
        conn.execute(
            "CREATE OR REPLACE FUNCTION victim() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF nextval('deadlock_victims') <= {int(times)} THEN "
            "RAISE EXCEPTION 'chosen as deadlock victim' USING ERRCODE = '40P01'; END IF; "
            "RETURN NULL; END $$"
        )
        conn.execute("DROP TRIGGER IF EXISTS victim ON delivery_event_ids")
        conn.execute(
            "CREATE TRIGGER victim BEFORE INSERT ON delivery_event_ids "
            "FOR EACH STATEMENT EXECUTE FUNCTION victim()"
        )


def test_a_deadlocked_append_is_retried_whole_and_counted_once(pg_url: str) -> None:
    import psycopg

    from adtarget.delivery.postgres import _RETRIES, PostgresEventStore

    store = PostgresEventStore(pg_url)
    try:
        events = make_events(50, seed=7)
        _fail_appends(store, _RETRIES - 1)  # every attempt but the last is a victim
        result = ingest_events(store=store, events=events)
        assert result.accepted == 50 and result.duplicates == 0
        count = store.connection.execute("SELECT count(*) FROM delivery_events").fetchone()
        assert count == (50,)

        _fail_appends(store, _RETRIES)  # every attempt fails: the error comes out, nothing kept
        with pytest.raises(psycopg.errors.DeadlockDetected):
            ingest_events(store=store, events=make_events(10, seed=8, prefix="x"))
        count = store.connection.execute("SELECT count(*) FROM delivery_events").fetchone()
        assert count == (50,)
    finally:
        store.close()
