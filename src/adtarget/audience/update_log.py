"""The durable log of accepted profile updates: SQLite in the data dir, or the fleet's PostgreSQL.

Why a table and not a file: an update must be durable before its answer (SQLite commits with
``synchronous=FULL`` in WAL mode, PostgreSQL commits its WAL), deduplicated by ``update_id``
(a unique key), ordered (``seq``), and readable by every other process or node after the
last sequence number it applied (a poll of ``seq > n``). Writers take the table's write lock
before picking sequence numbers, so sequence order is commit order and a poller never skips an
update committed late under a lower number.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

metadata = MetaData()
profile_updates = Table(
    "profile_updates",
    metadata,
    # INTEGER on SQLite: the rowid itself, one B-tree fewer to insert into per update (an
    # append of 5,000 updates spent 3/4 of its insert time there, measured)
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("update_id", String(200), nullable=False, unique=True),
    Column("user_id", String(256), nullable=False),
    Column("body", Text, nullable=False),
    Column("accepted_at", Float, nullable=False),
)


class LoggedUpdate(NamedTuple):
    """One row of the log (a tuple: made for every row a follower reads)."""

    seq: int
    user_id: str
    body: str


@dataclass(frozen=True)
class AppendResult:
    """What ``append`` did: the sequence numbers given, and which entries were duplicates."""

    accepted: list[tuple[int, int]]
    """``(entry index, seq)`` of every newly logged entry, in sequence order."""
    duplicates: list[int]
    """Indexes of entries whose ``update_id`` was logged before (or earlier in the batch)."""


def _normalize(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class UpdateLog:
    """Append, read after a sequence number, and prune the profile update log.

    Args:
        url: a SQLAlchemy URL (``sqlite:///data/updates.sqlite3`` or a PostgreSQL URL).
    """

    def __init__(self, url: str) -> None:
        self.url = _normalize(url)
        self.is_sqlite = make_url(self.url).get_backend_name() == "sqlite"
        self.engine: Engine = self._make_engine(write=True)
        self.reader: Engine = self._make_engine(write=False) if self.is_sqlite else self.engine
        self._local = threading.Lock()
        self._pid = self._reader_pid = os.getpid()
        metadata.create_all(self.engine, checkfirst=True)

    def _make_engine(self, *, write: bool) -> Engine:
        if not self.is_sqlite:
            return create_engine(self.url, pool_pre_ping=True, pool_size=4, max_overflow=4)
        # the writer keeps one connection (appends are serialized by ``_local``; a new
        # connection per batch, with its pragmas, was a tenth of an append, profiled); readers
        # (poll threads, catch-ups) share a small pool: a fresh connection per 100 ms poll was
        # ~2% of a serving process (py-spy). Autocommit reads see every commit.
        pool: dict[str, Any] = (
            {"poolclass": StaticPool} if write else {"pool_size": 2, "max_overflow": 6}
        )
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "isolation_level": None},
            **pool,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            if write:  # the update_id index outgrows the default 2 MB page cache (page misses)
                cur.execute("PRAGMA cache_size=-65536")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # writers take the write lock first: sequence numbers are picked under it
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def append(self, entries: Sequence[tuple[str, str, str]]) -> AppendResult:
        """Log ``(update_id, user_id, body)`` entries not seen before, durably, in order.

        Returns once committed: an entry reported accepted survives a crash of this process.
        """
        if not entries:
            return AppendResult([], [])
        with self._local, self._writer().begin() as conn:
            if not self.is_sqlite:
                conn.exec_driver_sql("LOCK TABLE profile_updates IN EXCLUSIVE MODE")
            seen = self._seen(conn, list({e[0] for e in entries}))
            last = conn.exec_driver_sql("SELECT coalesce(max(seq), 0) FROM profile_updates")
            seq = int(last.scalar() or 0)
            now = time.time()
            rows: list[tuple[int, str, str, str, float]] = []
            accepted: list[tuple[int, int]] = []
            duplicates: list[int] = []
            for index, (update_id, user_id, body) in enumerate(entries):
                if update_id in seen:
                    duplicates.append(index)
                    continue
                seen.add(update_id)
                seq += 1
                accepted.append((index, seq))
                rows.append((seq, update_id, user_id, body, now))
            if rows:
                # the driver's own executemany: SQLAlchemy's per-row parameter processing cost
                # as much as the rest of a batch (profiled), and these rows need none of it
                mark = "?" if self.is_sqlite else "%s"
                conn.exec_driver_sql(
                    "INSERT INTO profile_updates (seq, update_id, user_id, body, accepted_at) "
                    f"VALUES ({', '.join([mark] * 5)})",
                    rows,
                )
        return AppendResult(accepted, duplicates)

    def _seen(self, conn: Connection, ids: list[str]) -> set[str]:
        """Which of ``ids`` are logged already (one query: ``= ANY`` or ``json_each``)."""
        seen: set[str] = set()
        if not self.is_sqlite:
            got = conn.exec_driver_sql(
                "SELECT update_id FROM profile_updates WHERE update_id = ANY(%s)", (ids,)
            )
            seen.update(r[0] for r in got)
            return seen
        got = conn.exec_driver_sql(  # one parameter, whatever the batch size
            "SELECT update_id FROM profile_updates "
            "WHERE update_id IN (SELECT value FROM json_each(?))",
            (orjson.dumps(ids).decode(),),
        )
        seen.update(r[0] for r in got)
        return seen

    def _writer(self) -> Engine:
        """The write engine, made again in a forked child (its one SQLite connection is the
        parent's)."""
        if self._pid != os.getpid() and self.is_sqlite:
            self.engine = self._make_engine(write=True)
            self._pid = os.getpid()
        return self.engine

    def _readers(self) -> Engine:
        """The read engine, made again in a forked child (pooled connections are the
        parent's)."""
        if self._reader_pid != os.getpid() and self.is_sqlite:
            self.reader = self._make_engine(write=False)
            self._reader_pid = os.getpid()
        return self.reader

    def read_after(self, seq: int, limit: int = 100_000) -> list[LoggedUpdate]:
        """Logged updates with a sequence number above ``seq``, oldest first."""
        mark = "?" if self.is_sqlite else "%s"
        query = (
            "SELECT seq, user_id, body FROM profile_updates "
            f"WHERE seq > {mark} ORDER BY seq LIMIT {mark}"
        )
        with self._readers().connect() as conn:  # the driver's cursor: no Result per row
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cur.execute(query, (seq, limit))
                rows = cur.fetchall()
            finally:
                cur.close()
        return list(map(LoggedUpdate._make, rows))

    def last_seq(self) -> int:
        """The newest sequence number (0 for an empty log)."""
        with self._readers().connect() as conn:
            got = conn.scalar(select(func.coalesce(func.max(profile_updates.c.seq), 0)))
        return int(got or 0)

    def prune(self, *, through: int, older_than_s: float) -> int:
        """Drop entries folded into every kept snapshot (``seq <= through``) and older than
        ``older_than_s`` (their ``update_id`` stops being recognized as a duplicate then)."""
        t = profile_updates
        cutoff = time.time() - older_than_s
        with self._local, self._writer().begin() as conn:
            newest = conn.scalar(select(func.coalesce(func.max(t.c.seq), 0)))
            # the newest row always stays: sequence numbers continue from it
            through = min(through, int(newest or 0) - 1)
            result = conn.execute(delete(t).where(t.c.seq <= through, t.c.accepted_at < cutoff))
        return int(result.rowcount or 0)

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()
        self.reader.dispose()
