"""The PostgreSQL event store: ``delivery_events`` range-partitioned by day, rollups in SQL.

Why this shape: the primary key ``(day, event_id)`` makes ``INSERT ... ON CONFLICT DO NOTHING``
the dedup (concurrent writers of one id wait on each other, one wins), and one statement inserts
the batch and adds exactly the inserted rows (``RETURNING``) to ``hourly_stats`` and
``daily_stats`` — the log and the rollups commit together or not at all. Day partitions make
retention a cheap ``DROP TABLE`` and let reports prune by day.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

import pyarrow as pa
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from adtarget.delivery.models import EVENT_COUNTERS, EVENT_SCHEMA, ROLLUP_DIMS
from adtarget.delivery.reports import report_sql
from adtarget.delivery.rollup import COUNTERS, ROLLUP_SCHEMA, rollup_select_sql
from adtarget.delivery.store import ReportQuery
from adtarget.errors import StoreUnavailable

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL event store needs psycopg: pip install 'adtarget[postgres]'"
    ) from exc

_DIMS = ", ".join(ROLLUP_DIMS)
_DIM_COLS = ", ".join(f"{d} text NOT NULL" for d in ROLLUP_DIMS)
_COUNTER_COLS = ", ".join(f"{c} bigint NOT NULL" for c in COUNTERS)
_EVENT_COLS = ", ".join(EVENT_SCHEMA.names)
_RETRIES = 3
_T = TypeVar("_T")
CREATE_AHEAD_DAYS = 7
_PARTITION = re.compile(r"^delivery_events_(\d{8})$")

DDL = f"""
CREATE TABLE IF NOT EXISTS delivery_events (
    event_id text NOT NULL, type text NOT NULL, ts timestamptz NOT NULL, day date NOT NULL,
    user_id text NOT NULL, line_item_id text NOT NULL, campaign_id text NOT NULL,
    advertiser_id text NOT NULL, creative_id text NOT NULL, country text NOT NULL,
    device text NOT NULL, dims jsonb, cost_micros bigint NOT NULL,
    PRIMARY KEY (day, event_id)
) PARTITION BY RANGE (day);
CREATE TABLE IF NOT EXISTS delivery_event_ids (event_id text PRIMARY KEY,
    seen_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS hourly_stats (hour timestamptz NOT NULL, day date NOT NULL,
    {_DIM_COLS}, {_COUNTER_COLS}, PRIMARY KEY (hour, day, {_DIMS}));
CREATE TABLE IF NOT EXISTS daily_stats (day date NOT NULL, {_DIM_COLS}, {_COUNTER_COLS},
    PRIMARY KEY (day, {_DIMS}));
"""

_DAILY_SELECT = (
    f"SELECT day, {_DIMS}, "
    + ", ".join(f"count(*) FILTER (WHERE type = '{t}')" for t in EVENT_COUNTERS)
    + f", sum(cost_micros) FROM {{src}} GROUP BY day, {_DIMS}"
)


def _upsert(table: str, keys: str) -> str:
    sets = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in COUNTERS)
    return f"ON CONFLICT ({keys}) DO UPDATE SET {sets}"


_APPEND = f"""
WITH fresh AS (
    INSERT INTO delivery_event_ids (event_id, seen_at)
    SELECT DISTINCT event_id, now() FROM incoming ORDER BY event_id
    ON CONFLICT (event_id) DO UPDATE SET seen_at = EXCLUDED.seen_at
        WHERE delivery_event_ids.seen_at < now() - make_interval(hours => __DEDUP_HOURS__)
    RETURNING event_id
), ins AS (
    INSERT INTO delivery_events ({_EVENT_COLS})
    SELECT event_id, type, ts, day, user_id, line_item_id, campaign_id, advertiser_id,
           creative_id, country, device, dims::jsonb, cost_micros FROM incoming
    WHERE event_id IN (SELECT event_id FROM fresh)
    ORDER BY day, event_id
    ON CONFLICT (day, event_id) DO NOTHING
    RETURNING *
), h AS (
    INSERT INTO hourly_stats (hour, day, {_DIMS}, {", ".join(COUNTERS)})
    {rollup_select_sql("ins")} ORDER BY 1, 2, {_DIMS}
    {_upsert("hourly_stats", f"hour, day, {_DIMS}")}
), d AS (
    INSERT INTO daily_stats (day, {_DIMS}, {", ".join(COUNTERS)})
    {_DAILY_SELECT.format(src="ins")} ORDER BY day, {_DIMS}
    {_upsert("daily_stats", f"day, {_DIMS}")}
)
SELECT count(*) FROM ins
"""


def plain_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


def partition_name(day: date) -> str:
    return f"delivery_events_{day:%Y%m%d}"


def ensure_partitions(conn: psycopg.Connection[Any], start_day: date, days_ahead: int) -> list[str]:
    """Create the day partitions ``start_day .. start_day + days_ahead`` that are missing."""
    made = []
    existing = set(_partitions(conn))
    for i in range(days_ahead + 1):
        day = start_day + timedelta(days=i)
        name = partition_name(day)
        if day in existing:
            continue
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF delivery_events "
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
        )
        made.append(name)
    return made


def _partitions(conn: psycopg.Connection[Any]) -> dict[date, str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'delivery_events' "
        "AND pg_table_is_visible(c.oid)"
    ).fetchall()
    out = {}
    for (name,) in rows:
        m = _PARTITION.match(name)
        if m:
            out[datetime.strptime(m.group(1), "%Y%m%d").date()] = name
    return out


def drop_partitions_before(conn: psycopg.Connection[Any], day: date) -> list[date]:
    """Retention: drop every day partition older than ``day`` (and its rollup rows)."""
    dropped = sorted(d for d in _partitions(conn) if d < day)
    for d in dropped:
        conn.execute(f"DROP TABLE IF EXISTS {partition_name(d)}")
    conn.execute("DELETE FROM hourly_stats WHERE day < %s", [day])
    conn.execute("DELETE FROM daily_stats WHERE day < %s", [day])
    return dropped


class PostgresEventStore:
    """Delivery events in PostgreSQL; one connection guarded by a lock (threads share it)."""

    def __init__(self, url: str, *, retention_days: int = 400, dedup_hours: int = 48) -> None:
        self.retention_days = retention_days
        self.dedup_hours = dedup_hours
        self._url = plain_url(url)
        self._lock = threading.RLock()
        self._known_days: set[date] = set()
        self._closed = False
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        """A new session: schema (idempotent, serialized by an advisory lock) and temp table."""
        try:
            conn = psycopg.connect(self._url, autocommit=True, options="-c timezone=UTC")
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(
                f"events database unreachable: {exc}", field="events_url"
            ) from exc
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('adtarget_delivery_ddl'))")
            conn.execute(DDL)
            self._carry_over_ids(conn)
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS incoming (event_id text, type text, "
                "ts timestamptz, day date, user_id text, line_item_id text, campaign_id text, "
                "advertiser_id text, creative_id text, country text, device text, dims text, "
                "cost_micros bigint) ON COMMIT DELETE ROWS"
            )
        return conn

    def _carry_over_ids(self, conn: psycopg.Connection[Any]) -> None:
        """Ids stored before dedup by id alone (only ``(day, event_id)`` then) are recorded in
        ``delivery_event_ids``, stamped with the end of their day as the Parquet store does, so
        a retry of an event sent before the upgrade is still a duplicate inside the window.

        Runs under the DDL lock while the table is still empty: once, on the first connection
        after the upgrade, before any append can claim an id.
        """
        if conn.execute("SELECT 1 FROM delivery_event_ids LIMIT 1").fetchone() is not None:
            return
        conn.execute(
            "INSERT INTO delivery_event_ids (event_id, seen_at) "
            "SELECT event_id, (max(day) + 1)::timestamptz FROM delivery_events "
            "WHERE day >= (now() - make_interval(hours => %s))::date - 1 "
            "GROUP BY event_id ON CONFLICT (event_id) DO NOTHING",
            [self.dedup_hours],
        )

    def _call(self, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``fn`` on the connection; if the server dropped it, reconnect and run it again.

        Why retrying is safe: every write is one transaction, and ``append`` dedups on
        ``(day, event_id)``, so a batch whose COMMIT landed before the connection broke is
        counted once (the retry sees its events as duplicates).
        """
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the event store is closed", field="events_store")
            try:
                return fn(self._conn)
            except psycopg.OperationalError:
                if not (self._conn.broken or self._conn.closed):
                    raise
            self._conn = self._connect()  # raises StoreUnavailable while the server is down
            self._known_days.clear()
            return fn(self._conn)

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._conn

    def _ensure_days(self, conn: psycopg.Connection[Any], days: list[date]) -> None:
        missing = [d for d in days if d not in self._known_days]
        if not missing:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('adtarget_delivery_ddl'))")
            for d in missing:
                ensure_partitions(conn, d, 0)
        self._known_days.update(missing)

    def append(self, events: pa.Table) -> int:
        if events.num_rows == 0:
            return 0
        events = events.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)
        cols = [events[n].to_pylist() for n in EVENT_SCHEMA.names]
        days = events["day"].unique().to_pylist()

        def run(conn: psycopg.Connection[Any]) -> int:
            self._ensure_days(conn, days)
            # Rows are locked in key order, so a deadlock is rare; the whole batch is retried
            # (tenacity: at most _RETRIES attempts, no wait, the last error re-raised).
            for attempt in Retrying(
                stop=stop_after_attempt(_RETRIES),
                retry=retry_if_exception_type(psycopg.errors.DeadlockDetected),
                reraise=True,
            ):
                with attempt:
                    return self._append_once(conn, cols, self.dedup_hours)
            return 0  # pragma: no cover - the loop returns or raises

        return self._call(run)

    @staticmethod
    def _append_once(conn: psycopg.Connection[Any], cols: list[list[Any]], hours: int) -> int:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY incoming ({_EVENT_COLS}) FROM STDIN") as copy:
                for row in zip(*cols, strict=True):
                    copy.write_row(row)
            sql = _APPEND.replace("__DEDUP_HOURS__", str(int(hours)))
            found = cur.execute(sql).fetchone()
        return int(found[0]) if found else 0

    def query_report(self, query: ReportQuery) -> list[dict[str, Any]]:
        daily = (
            "hour" not in query.group_by
            and query.start.time() == time(0)
            and query.end.time() == time(0)
        )
        sql, params = report_sql(
            query,
            stats="daily_stats" if daily else "hourly_stats",
            events="delivery_events",
            placeholder="%s",
            daily=daily,
        )

        def run(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                names = [d.name for d in cur.description or []]
                return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        return self._call(run)

    def _fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self._call(lambda conn: conn.execute(sql, params).fetchall())

    def rollups(self) -> pa.Table:
        rows = self._fetch(f"SELECT {', '.join(ROLLUP_SCHEMA.names)} FROM hourly_stats")
        cols: list[tuple[Any, ...]] = (
            list(zip(*rows, strict=True)) if rows else [() for _ in ROLLUP_SCHEMA.names]
        )
        return pa.table(
            {n: list(v) for n, v in zip(ROLLUP_SCHEMA.names, cols, strict=True)},
            schema=ROLLUP_SCHEMA,
        )

    def daily_rollups(self) -> list[tuple[Any, ...]]:
        """``daily_stats`` rows (day, dims..., counters...) sorted; for audits and tests."""
        return self._fetch(
            f"SELECT day, {_DIMS}, {', '.join(COUNTERS)} FROM daily_stats ORDER BY day, {_DIMS}"
        )

    def rebuild_rollups(self) -> None:
        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("LOCK TABLE hourly_stats, daily_stats IN EXCLUSIVE MODE")
                conn.execute("DELETE FROM hourly_stats")
                conn.execute(
                    f"INSERT INTO hourly_stats (hour, day, {_DIMS}, "
                    f"{', '.join(COUNTERS)}) {rollup_select_sql('delivery_events')}"
                )
                conn.execute("DELETE FROM daily_stats")
                conn.execute(
                    f"INSERT INTO daily_stats (day, {_DIMS}, {', '.join(COUNTERS)}) "
                    + _DAILY_SELECT.format(src="delivery_events")
                )

        self._call(run)

    def scan(self, start_day: date | None = None, end_day: date | None = None) -> pa.Table:
        lo, hi = start_day or date.min, end_day or date.max
        rows = self._fetch(
            f"SELECT {_EVENT_COLS} FROM delivery_events WHERE day >= %s AND day <= %s "
            "ORDER BY day, event_id",
            [lo, hi],
        )
        cols: list[tuple[Any, ...]] = (
            list(zip(*rows, strict=True)) if rows else [() for _ in EVENT_SCHEMA.names]
        )
        data = {n: list(v) for n, v in zip(EVENT_SCHEMA.names, cols, strict=True)}
        data["dims"] = [None if d is None else json.dumps(d, sort_keys=True) for d in data["dims"]]
        return pa.table(data, schema=EVENT_SCHEMA)

    def spend_totals(self) -> list[tuple[str, str, int]]:
        rows = self._fetch(
            "SELECT line_item_id, campaign_id, sum(spend_micros) FROM daily_stats "
            "GROUP BY line_item_id, campaign_id"
        )
        return [(li, c, int(s)) for li, c, s in rows]

    def hourly_spend(self, since: datetime) -> list[tuple[datetime, str, str, int]]:
        rows = self._fetch(
            "SELECT hour, line_item_id, campaign_id, sum(spend_micros) FROM hourly_stats "
            "WHERE hour >= %s GROUP BY hour, line_item_id, campaign_id",
            [since],
        )
        return [(h.astimezone(UTC), li, c, int(s)) for h, li, c, s in rows]

    def apply_retention(self, today: date) -> list[date]:
        """Drop partitions before the window and create the next week's (create-ahead)."""
        cutoff = today - timedelta(days=self.retention_days)

        def run(conn: psycopg.Connection[Any]) -> list[date]:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('adtarget_delivery_ddl'))")
                dropped = drop_partitions_before(conn, cutoff)
                ensure_partitions(conn, today - timedelta(days=1), CREATE_AHEAD_DAYS + 1)
            return dropped

        dropped = self._call(run)
        self._known_days -= set(dropped)
        return dropped

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()
