"""The default event store: Parquet files by day, a SQLite dedup index and rollups, DuckDB reports.

Layout under ``events_dir``: ``day=YYYY-MM-DD/part-<time>-<uuid>.parquet`` (append-only),
``index.sqlite3`` with ``seen(day, event_id)``, ``hourly_stats``, ``pending`` and ``retired``
tables, and ``log.lock`` (readers share it; compaction swaps files under it exclusively).

Exactly once, across batches, processes and crashes — one ``append``:
1. ``BEGIN IMMEDIATE`` on the index (one writer at a time, across processes);
2. drop the events whose ``(day, event_id)`` is already in ``seen``;
3. write the rest to ``day=D/.tmp-*.parquet`` and fsync;
4. in the same transaction: insert their keys into ``seen``, add the batch to ``hourly_stats``,
   record each ``(tmp, final)`` file in ``pending``; ``COMMIT``;
5. rename each temp file into place, fsync the directory, clear its ``pending`` row.

The COMMIT is the single point where a batch becomes counted. A crash before it leaves only
orphan temp files (deleted when a store next opens, under the write lock, so never a live
writer's) and the client retries. A crash after it leaves ``pending`` rows whose temp files
are complete and fsynced: the next open renames them into place (redo), so a committed event
is never missing from the log, and a retry is a duplicate. Compaction (many small HTTP
batches make many small files) follows the same rule: the merged temp file and the sources it
retires are committed first, then swapped. SQLite (not DuckDB) holds the index
because several processes (API workers, CLI imports) must write to it; SQLite waits for the
lock where DuckDB refuses a second writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adtarget.delivery.models import EVENT_SCHEMA, ROLLUP_DIMS
from adtarget.delivery.reports import raw_report_sql
from adtarget.delivery.rollup import COUNTERS, ROLLUP_SCHEMA, rollup_batch, rollup_select_sql
from adtarget.delivery.store import ReportQuery
from adtarget.process import fsync_dir

log = logging.getLogger("adtarget.delivery")

_KEYS = ("hour", "day", *ROLLUP_DIMS)
#: A day with this many part files gets its small ones (< COMPACT_SMALL_BYTES) merged.
COMPACT_MIN_FILES = 32
COMPACT_SMALL_BYTES = 16 << 20
_SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS seen (day TEXT NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (day, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hourly_stats (hour INTEGER NOT NULL, day TEXT NOT NULL,
    {", ".join(f"{d} TEXT NOT NULL" for d in ROLLUP_DIMS)},
    {", ".join(f"{c} INTEGER NOT NULL" for c in COUNTERS)},
    PRIMARY KEY ({", ".join(_KEYS)})) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hourly_stats_day ON hourly_stats (day);
CREATE TABLE IF NOT EXISTS seen_ids (event_id TEXT PRIMARY KEY, seen_at INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (tmp TEXT PRIMARY KEY, final TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS retired (path TEXT PRIMARY KEY);
"""
_UPSERT = (
    f"INSERT INTO hourly_stats ({', '.join(_KEYS)}, {', '.join(COUNTERS)}) "
    f"VALUES ({', '.join('?' for _ in (*_KEYS, *COUNTERS))}) "
    f"ON CONFLICT ({', '.join(_KEYS)}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTERS)
)


def _to_arrow(rows: list[tuple[Any, ...]], names: list[str]) -> pa.Table:
    """SQLite rows to Arrow: epoch ``hour`` to UTC timestamps, ``day`` text to dates."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    data: dict[str, pa.Array] = {}
    for name, values in zip(names, cols, strict=True):
        if name == "hour":
            data[name] = pc.multiply(pa.array(values, pa.int64()), 1_000_000).cast(
                pa.timestamp("us", tz="UTC")
            )
        elif name == "day":
            data[name] = pa.array(values, pa.string()).cast(pa.date32())
        elif name in ROLLUP_DIMS:
            data[name] = pa.array(values, pa.string())
        else:
            data[name] = pa.array(values, pa.int64())
    return pa.table(data)


class ParquetEventStore:
    """Append-only Parquet event log with a SQLite dedup index and hourly rollups."""

    def __init__(self, root: Path, *, retention_days: int = 400, dedup_hours: int = 48) -> None:
        self.root = Path(root)
        self.retention_days = retention_days
        self.dedup_s = dedup_hours * 3600
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.root / "index.sqlite3", timeout=60, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # the COMMIT is the counting point
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: the rollup B-tree stays hot
        self._db.executescript(_SCHEMA_SQL)
        self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS batch_keys (pos INTEGER PRIMARY KEY, day TEXT, "
            "event_id TEXT)"
        )
        self._duck = duckdb.connect()
        self._duck.execute("SET TimeZone = 'UTC'")
        self._migrate_seen()
        self.recover()

    def _migrate_seen(self) -> None:
        """Ids recorded by ``(day, event_id)`` (before dedup by id alone) move to ``seen_ids``,
        stamped with the end of their day, so a retry inside the window is still a duplicate."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM seen LIMIT 1").fetchone() is None:
                return
            db.execute(
                "INSERT OR IGNORE INTO seen_ids (event_id, seen_at) "
                "SELECT event_id, CAST(strftime('%s', day, '+1 day') AS INTEGER) FROM seen"
            )
            db.execute("DELETE FROM seen")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: the cross-process writer lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _files_lock(self, mode: int) -> Iterator[None]:
        """``flock`` on ``log.lock``: readers share it while they list and read part files;
        compaction holds it exclusively while it swaps files, so no reader sees both the
        merged file and its sources (double counts) or a source vanish mid-read."""
        with open(self.root / "log.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), mode)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def _compaction(self) -> Iterator[None]:
        """``flock`` on ``compact.lock``: one compaction (or recovery) at a time, across
        processes, from listing its sources to deleting them. Without it a second worker
        listed the sources the first had merged but not yet deleted, and merged them again
        (events doubled) or read one as it vanished (a 500 on event intake)."""
        with open(self.root / "compact.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def recover(self) -> None:
        """Finish committed renames and delete uncommitted temp files (see module docstring)."""
        with self._compaction(), self._write() as db, self._files_lock(fcntl.LOCK_EX):
            for tmp, final in db.execute("SELECT tmp, final FROM pending").fetchall():
                # a live writer's rename (``_publish``, after its COMMIT, under no lock this
                # holds) may land between a check and ours: try it, a missing temp is done
                with contextlib.suppress(FileNotFoundError):
                    os.replace(tmp, final)
            for (path,) in db.execute("SELECT path FROM retired").fetchall():
                Path(path).unlink(missing_ok=True)
            db.execute("DELETE FROM pending")
            db.execute("DELETE FROM retired")
            for orphan in self.root.glob("day=*/.tmp-*"):
                orphan.unlink(missing_ok=True)

    def compact(self, day: date, *, min_files: int = COMPACT_MIN_FILES) -> int:
        """Merge a day's small part files into one; returns how many were merged.

        Same protocol as ``append``: the merged temp file and the retired sources are recorded
        in one transaction, then swapped under the exclusive files lock; a crash in between is
        finished by ``recover()`` (rename the merge, delete the sources).
        """
        with self._compaction():
            return self._compact(day, min_files)

    def _compact(self, day: date, min_files: int) -> int:
        folder = self._day_dir(day)
        with self._write() as db:
            retired = {p for (p,) in db.execute("SELECT path FROM retired")}
            small = []
            for p in sorted(folder.glob("part-*.parquet")):
                try:
                    if str(p) not in retired and p.stat().st_size < COMPACT_SMALL_BYTES:
                        small.append(p)
                except FileNotFoundError:  # retired by a compaction that just finished
                    continue
            if len(small) < min_files:
                return 0
            merged = pa.concat_tables([pq.read_table(p, schema=EVENT_SCHEMA) for p in small])
            stamp = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"
            tmp, final = folder / f".tmp-part-{stamp}.parquet", folder / f"part-{stamp}.parquet"
            with open(tmp, "wb") as fh:
                pq.write_table(merged, fh, compression="zstd")
                fh.flush()
                os.fsync(fh.fileno())
            db.execute("INSERT INTO pending VALUES (?, ?)", (str(tmp), str(final)))
            db.executemany("INSERT OR IGNORE INTO retired VALUES (?)", [(str(p),) for p in small])
        with self._files_lock(fcntl.LOCK_EX):
            os.replace(tmp, final)
            for p in small:
                p.unlink(missing_ok=True)
            fsync_dir(folder)
        with self._lock:
            self._db.execute("DELETE FROM pending WHERE tmp = ?", (str(tmp),))
            self._db.executemany("DELETE FROM retired WHERE path = ?", [(str(p),) for p in small])
        return len(small)

    def _day_dir(self, day: date) -> Path:
        return self.root / f"day={day.isoformat()}"

    def append(self, events: pa.Table) -> int:
        """Store never-seen events; return how many (see the module docstring for the protocol)."""
        if events.num_rows == 0:
            return 0
        events = events.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)
        days = [d.isoformat() for d in events["day"].to_pylist()]
        ids = events["event_id"].to_pylist()
        moves: list[tuple[Path, Path]] = []
        try:
            with self._write() as db:
                db.execute("DELETE FROM batch_keys")
                db.executemany(
                    "INSERT INTO batch_keys VALUES (?, ?, ?)",
                    zip(range(len(ids)), days, ids, strict=True),
                )
                now = int(time.time())
                dup = {
                    p
                    for (p,) in db.execute(
                        "SELECT b.pos FROM batch_keys b JOIN seen_ids s "
                        "ON s.event_id = b.event_id AND s.seen_at >= ?",
                        [now - self.dedup_s],
                    )
                }
                if dup:
                    events = events.filter(pa.array([i not in dup for i in range(len(ids))]))
                if events.num_rows == 0:
                    return 0
                moves = self._write_temp_files(events)
                db.execute(
                    "INSERT INTO seen_ids (event_id, seen_at) SELECT event_id, ? FROM batch_keys "
                    "WHERE true ON CONFLICT (event_id) DO UPDATE SET seen_at = excluded.seen_at",
                    [now],
                )
                db.executemany(_UPSERT, self._rollup_params(rollup_batch(events)))
                db.executemany(
                    "INSERT INTO pending VALUES (?, ?)", [(str(t), str(f)) for t, f in moves]
                )
        except BaseException:
            for tmp, _ in moves:
                tmp.unlink(missing_ok=True)
            raise
        self._publish(moves)
        for _, final in moves:  # many small batches (HTTP intake) would mean many tiny files
            if len(list(final.parent.glob("part-*.parquet"))) >= COMPACT_MIN_FILES:
                try:
                    self.compact(date.fromisoformat(final.parent.name[4:]))
                except Exception:  # the batch is committed; a failed merge only costs files
                    log.exception("compacting %s failed; its files stay as they are", final.parent)
        return int(events.num_rows)

    def _write_temp_files(self, events: pa.Table) -> list[tuple[Path, Path]]:
        moves = []
        stamp = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"
        for day in events["day"].unique().to_pylist():
            part = events.filter(pc.equal(events["day"], pa.scalar(day, pa.date32())))
            folder = self._day_dir(day)
            folder.mkdir(exist_ok=True)
            tmp = folder / f".tmp-part-{stamp}.parquet"
            with open(tmp, "wb") as fh:
                pq.write_table(part, fh, compression="zstd")
                fh.flush()
                os.fsync(fh.fileno())
            moves.append((tmp, folder / f"part-{stamp}.parquet"))
        return moves

    def _publish(self, moves: list[tuple[Path, Path]]) -> None:
        for tmp, final in moves:
            try:
                os.replace(tmp, final)
            except FileNotFoundError:  # another process's recover() already moved it
                if not final.exists():
                    raise
            fsync_dir(final.parent)
        with self._lock:
            self._db.executemany("DELETE FROM pending WHERE tmp = ?", [(str(t),) for t, _ in moves])

    @staticmethod
    def _rollup_params(rollup: pa.Table) -> list[tuple[Any, ...]]:
        hours = pc.divide(rollup["hour"].cast(pa.int64()), 1_000_000).to_pylist()
        days = rollup["day"].cast(pa.string()).to_pylist()
        rest = [rollup[c].to_pylist() for c in (*ROLLUP_DIMS, *COUNTERS)]
        return list(zip(hours, days, *rest, strict=True))

    def rollups(self) -> pa.Table:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join((*_KEYS, *COUNTERS))} FROM hourly_stats"
            ).fetchall()
        return _to_arrow(rows, list(ROLLUP_SCHEMA.names))

    def _grouped_stats(self, query: ReportQuery) -> pa.Table:
        """The rollups summed by the report's keys inside SQLite (only grouped rows move)."""
        where = "hour >= ? AND hour < ?"
        params: list[Any] = [int(query.start.timestamp()), int(query.end.timestamp())]
        if query.advertiser_id is not None:
            where += " AND advertiser_id = ?"
            params.append(query.advertiser_id)
        keys = list(query.group_by)
        cols = [*keys, *query.counters]
        sel = ", ".join([*keys, *(f"sum({c})" for c in query.counters)]) or "count(*)"
        group = f" GROUP BY {', '.join(keys)}" if keys else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {sel} FROM hourly_stats WHERE {where}{group}", params
            ).fetchall()
        if not keys:
            rows = [r for r in rows if r[0] is not None] if query.counters else []
        return _to_arrow(rows, cols or ["n_rows"])

    def _files(self, start_day: date | None, end_day: date | None) -> list[str]:
        out = []
        for folder in sorted(self.root.glob("day=*")):
            day = date.fromisoformat(folder.name[4:])
            if (start_day is None or day >= start_day) and (end_day is None or day <= end_day):
                out += [str(p) for p in sorted(folder.glob("part-*.parquet"))]
        return out

    def _events_relation(
        self, con: duckdb.DuckDBPyConnection, start_day: date | None, end_day: date | None
    ) -> None:
        files = self._files(start_day, end_day)
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(
                "CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM "
                f"read_parquet([{listed}], hive_partitioning = false)"
            )
        else:
            con.register("events_empty", EVENT_SCHEMA.empty_table())
            con.execute("CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM events_empty")

    def scan(self, start_day: date | None = None, end_day: date | None = None) -> pa.Table:
        with self._files_lock(fcntl.LOCK_SH):
            files = self._files(start_day, end_day)
            if not files:
                return EVENT_SCHEMA.empty_table()
            return pa.concat_tables([pq.read_table(f, schema=EVENT_SCHEMA) for f in files])

    def query_report(self, query: ReportQuery) -> list[dict[str, Any]]:
        """Counters from the rollups; with reach, everything in one DuckDB scan of the log."""
        if not query.reach:
            stats = self._grouped_stats(query)
            if not query.group_by:
                return stats.to_pylist() or [{}]
            ordered: list[dict[str, Any]] = stats.sort_by(
                [(k, "ascending") for k in query.group_by]
            ).to_pylist()
            return ordered
        with self._lock:
            con = self._duck.cursor()
        try:
            con.execute("SET TimeZone = 'UTC'")
            last = (query.end - timedelta(microseconds=1)).date()
            with self._files_lock(fcntl.LOCK_SH):
                self._events_relation(con, query.start.date(), last)
                sql, params = raw_report_sql(query, events="events", placeholder="?")
                cur = con.execute(sql, params)
                names = [d[0] for d in cur.description]
                rows = cur.fetchall()
            return [dict(zip(names, row, strict=True)) for row in rows]
        finally:
            con.close()

    def rebuild_rollups(self) -> None:
        with self._lock:
            con = self._duck.cursor()
        try:
            con.execute("SET TimeZone = 'UTC'")
            with self._files_lock(fcntl.LOCK_SH):
                self._events_relation(con, None, None)
                fresh = con.sql(rollup_select_sql("events")).to_arrow_table()
        finally:
            con.close()
        params = self._rollup_params(fresh.cast(ROLLUP_SCHEMA)) if fresh.num_rows else []
        with self._write() as db:
            db.execute("DELETE FROM hourly_stats")
            db.executemany(_UPSERT, params)

    def spend_totals(self) -> list[tuple[str, str, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT line_item_id, campaign_id, sum(spend_micros) FROM hourly_stats "
                "GROUP BY line_item_id, campaign_id"
            ).fetchall()
        return [(str(li), str(c), int(s)) for li, c, s in rows]

    def hourly_spend(self, since: datetime) -> list[tuple[datetime, str, str, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT hour, line_item_id, campaign_id, sum(spend_micros) FROM hourly_stats "
                "WHERE hour >= ? GROUP BY hour, line_item_id, campaign_id",
                [int(since.timestamp())],
            ).fetchall()
        return [(datetime.fromtimestamp(h, UTC), li, c, s) for h, li, c, s in rows]

    def apply_retention(self, today: date) -> list[date]:
        cutoff = today - timedelta(days=self.retention_days)
        old = [
            d
            for d in (date.fromisoformat(p.name[4:]) for p in self.root.glob("day=*"))
            if d < cutoff
        ]
        with self._write() as db:
            db.execute("DELETE FROM seen WHERE day < ?", [cutoff.isoformat()])
            db.execute("DELETE FROM seen_ids WHERE seen_at < ?", [int(time.time()) - self.dedup_s])
            db.execute("DELETE FROM hourly_stats WHERE day < ?", [cutoff.isoformat()])
        with self._files_lock(fcntl.LOCK_EX):
            for day in old:  # after the commit: a crash here leaves files the next run drops
                shutil.rmtree(self._day_dir(day), ignore_errors=True)
        return sorted(old)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._duck.close()
