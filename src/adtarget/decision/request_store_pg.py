"""Sampled requests in PostgreSQL: one table every node of a fleet appends to.

Why PostgreSQL as the at-scale store: with several decision nodes, each node's Parquet files
hold only its own share of the sample, and a forecast on one node would see a fraction of the
traffic; a shared table (the catalog's database by default) holds the whole sample. Rows are
appended with ``COPY`` (one per writer flush), read a day at a time through the ``day`` index,
and retention deletes whole days.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from adtarget.decision.request_store import SCHEMA, SampledRequest, day_of, remember_day
from adtarget.errors import StoreUnavailable

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL request log needs psycopg: pip install 'adtarget[postgres]'"
    ) from exc

TABLE = "request_samples"
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    day date NOT NULL, ts double precision NOT NULL, user_id text NOT NULL,
    context text NOT NULL, formats text[], "limit" integer NOT NULL, pod text,
    served bigint[] NOT NULL, sample_rate double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS {TABLE}_day ON {TABLE} (day, ts);
"""
_COLUMNS = 'day, ts, user_id, context, formats, "limit", pod, served, sample_rate'


class PostgresRequestStore:
    """The request log in a PostgreSQL table (created on first use).

    Args:
        url: a PostgreSQL URL (SQLAlchemy's ``postgresql+psycopg://`` is accepted).
    """

    def __init__(self, url: str) -> None:
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self._ready = False

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"request log database unreachable: {exc}") from exc
        if not self._ready:
            conn.execute(DDL)
            self._ready = True
        return conn

    def write(self, rows: Sequence[SampledRequest]) -> int:
        """Append ``rows`` with one ``COPY``."""
        if not rows:
            return 0
        with (
            self._connect() as conn,
            conn.cursor() as cur,
            cur.copy(f"COPY {TABLE} ({_COLUMNS}) FROM STDIN") as copy,
        ):
            for r in rows:
                copy.write_row(
                    (
                        day_of(r.ts), r.ts, r.user_id, orjson.dumps(r.context).decode(),
                        list(r.formats) if r.formats is not None else None, r.limit,
                        orjson.dumps(r.pod).decode() if r.pod else None, list(r.served),
                        r.sample_rate,
                    )
                )  # fmt: skip
        return len(rows)

    def days(self) -> list[date]:
        """Days holding at least one row, ascending."""
        with self._connect() as conn:
            found = conn.execute(f"SELECT DISTINCT day FROM {TABLE} ORDER BY day").fetchall()
        return [row[0] for row in found]

    def day_version(self, day: date) -> tuple[Any, ...]:
        """What ``day`` holds, as (database, rows, last time): rows are only appended and
        days deleted whole, so an equal answer means equal rows (one index scan of the day)."""
        with self._connect() as conn:
            found = conn.execute(
                f"SELECT count(*), max(ts) FROM {TABLE} WHERE day = %s", (day,)
            ).fetchone()
        count, last = found if found is not None else (0, None)
        return (self.url, int(count), last)

    def read_day(self, day: date) -> pa.Table:
        """Every row of ``day``, in time order; kept in memory while ``day_version`` is
        unchanged (a past day is fetched once, not per forecast)."""
        version = self.day_version(day)
        if not version[1]:
            return SCHEMA.empty_table()
        return remember_day(("pg", str(day), version), lambda: self._fetch_day(day))

    def _fetch_day(self, day: date) -> pa.Table:
        with self._connect() as conn:
            rows = conn.execute(
                f'SELECT ts, user_id, context, formats, "limit", pod, served, sample_rate '
                f"FROM {TABLE} WHERE day = %s ORDER BY ts",
                (day,),
            ).fetchall()
        columns: list[Sequence[Any]] = (
            list(zip(*rows, strict=True)) if rows else [() for _ in SCHEMA.names]
        )
        return pa.table(
            {name: pa.array(list(col), SCHEMA.field(name).type)
             for name, col in zip(SCHEMA.names, columns, strict=True)},
            schema=SCHEMA,
        )  # fmt: skip

    def prune(self, retention_days: int, now: datetime | None = None) -> list[date]:
        """Delete the days older than ``retention_days`` before ``now``; the days deleted."""
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        oldest = today - timedelta(days=retention_days)
        with self._connect() as conn, conn.transaction():
            gone = conn.execute(
                f"SELECT DISTINCT day FROM {TABLE} WHERE day < %s ORDER BY day", (oldest,)
            ).fetchall()
            conn.execute(f"DELETE FROM {TABLE} WHERE day < %s", (oldest,))
        return [row[0] for row in gone]
