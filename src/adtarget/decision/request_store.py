"""Where sampled ad requests are kept: Parquet files by UTC day under ``data_dir/requests``.

Why Parquet by day: the forecaster reads whole days (the history day it projects onto a flight
day), retention deletes whole days, and a day directory is a dataset pyarrow reads in one call.
Each writer flush is one file (``part-<ns>-<pid>.parquet``), so several worker processes append
without coordinating; nothing is ever rewritten in place.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("ts", pa.float64()),
        ("user_id", pa.string()),
        ("context", pa.string()),
        ("formats", pa.list_(pa.string())),
        ("limit", pa.int32()),
        ("pod", pa.string()),
        ("served", pa.list_(pa.int64())),
        ("sample_rate", pa.float64()),
    ]
)
"""One row per sampled request: epoch seconds, who, the context (JSON text), the formats asked
(null = any), how many answers, the pod asked (JSON text or null), the line items served, and
the sampling rate in force (the forecaster scales each row by ``1 / sample_rate``)."""

DAY_PREFIX = "day="
DAYS_KEPT_ROWS = 2_000_000
"""Rows of read days ``ParquetRequestStore.read_day`` keeps in memory (the last days read)."""
_READ: OrderedDict[Hashable, pa.Table] = OrderedDict()
_READ_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class SampledRequest:
    """One logged request (what ``RequestLog.record`` queues and the store writes)."""

    ts: float
    user_id: str
    context: dict[str, Any]
    formats: tuple[str, ...] | None
    limit: int
    served: tuple[int, ...]
    sample_rate: float
    pod: Any = None
    """The pod asked (a mapping or dataclass, stored as JSON), or ``None``."""


class RequestStore(Protocol):
    """Where sampled requests are kept: Parquet by day here, PostgreSQL in
    ``request_store_pg.py`` (a fleet's nodes share one log there)."""

    def write(self, rows: Sequence[SampledRequest]) -> int:
        """Append rows; how many were written."""
        ...

    def days(self) -> list[date]:
        """Days holding at least one row, ascending."""
        ...

    def read_day(self, day: date) -> pa.Table:
        """Every row of ``day`` as a table of ``SCHEMA``."""
        ...

    def prune(self, retention_days: int, now: datetime | None = None) -> list[date]:
        """Delete days older than ``retention_days``; the days deleted."""
        ...


def remember_day(key: Hashable, read: Callable[[], pa.Table]) -> pa.Table:
    """The table kept for ``key`` (a day and its version), or ``read()`` kept under it: the
    last days read, ``DAYS_KEPT_ROWS`` rows at most (older ones dropped first)."""
    with _READ_LOCK:
        found = _READ.get(key)
        if found is not None:
            _READ.move_to_end(key)
            return found
    table = read()
    with _READ_LOCK:
        _READ[key] = table
        while sum(t.num_rows for t in _READ.values()) > DAYS_KEPT_ROWS and len(_READ) > 1:
            _READ.popitem(last=False)
    return table


def forget_read_days() -> None:
    """Drop the days ``ParquetRequestStore.read_day`` keeps (a benchmark's cold start)."""
    with _READ_LOCK:
        _READ.clear()


def day_of(ts: float) -> date:
    """The UTC day of an epoch timestamp."""
    return datetime.fromtimestamp(ts, UTC).date()


class ParquetRequestStore:
    """Sampled requests as Parquet files, one directory per UTC day.

    Args:
        root: the directory (``data_dir/requests`` in the app).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._seq = 0

    def _day_dir(self, day: date) -> Path:
        return self.root / f"{DAY_PREFIX}{day.isoformat()}"

    def write(self, rows: Sequence[SampledRequest]) -> int:
        """Append ``rows`` (one new file per day touched); the number of rows written."""
        by_day: dict[date, list[SampledRequest]] = {}
        for row in rows:
            by_day.setdefault(day_of(row.ts), []).append(row)
        for day, part in by_day.items():
            table = pa.table(
                {
                    "ts": [r.ts for r in part],
                    "user_id": [r.user_id for r in part],
                    "context": [orjson.dumps(r.context).decode() for r in part],
                    "formats": [list(r.formats) if r.formats is not None else None for r in part],
                    "limit": [r.limit for r in part],
                    "pod": [orjson.dumps(r.pod).decode() if r.pod else None for r in part],
                    "served": [list(r.served) for r in part],
                    "sample_rate": [r.sample_rate for r in part],
                },
                schema=SCHEMA,
            )
            folder = self._day_dir(day)
            folder.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"part-{time.time_ns()}-{os.getpid()}-{self._seq}.parquet"
            tmp = folder / f".{name}.tmp"
            pq.write_table(table, tmp)
            os.replace(tmp, folder / name)  # readers never see a half-written file
        return len(rows)

    def days(self) -> list[date]:
        """The days that hold at least one file, ascending."""
        if not self.root.is_dir():
            return []
        out = []
        for entry in self.root.iterdir():
            if entry.is_dir() and entry.name.startswith(DAY_PREFIX):
                try:
                    day = date.fromisoformat(entry.name[len(DAY_PREFIX) :])
                except ValueError:
                    continue
                if any(entry.glob("part-*.parquet")):
                    out.append(day)
        return sorted(out)

    def day_version(self, day: date) -> tuple[str, ...]:
        """What ``day`` holds, as the names of its files: a file is never rewritten (each flush
        writes a new one, retention deletes whole days), so equal names mean equal rows."""
        return tuple(sorted(f.name for f in self._day_dir(day).glob("part-*.parquet")))

    def read_day(self, day: date) -> pa.Table:
        """Every request logged on ``day`` (an empty table when none).

        Kept in memory by (directory, file names) for the next forecast: a past day is read
        once, not per forecast (``DAYS_KEPT_ROWS`` rows at most, ~100 bytes each)."""
        names = self.day_version(day)
        if not names:
            return SCHEMA.empty_table()
        folder = self._day_dir(day)
        return remember_day(
            (str(folder.resolve()), names), lambda: _read_files([folder / n for n in names])
        )

    def prune(self, retention_days: int, now: datetime | None = None) -> list[date]:
        """Delete the days older than ``retention_days`` before ``now``; the days deleted."""
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        oldest = today - timedelta(days=retention_days)
        gone = [d for d in self.days() if d < oldest]
        for day in gone:
            shutil.rmtree(self._day_dir(day), ignore_errors=True)
        return gone


READ_THREADS = 2
"""Files of a day read at once (each flush writes one; small ones decode on one core each)."""


def _read_files(paths: Sequence[Path]) -> pa.Table:
    """The files' rows, in order, read ``READ_THREADS`` at a time (Parquet decoding leaves
    the GIL: a day of five 28,000-row files read 15-20% faster on two cores)."""
    if len(paths) < 2:
        return pa.concat_tables([_read_file(p) for p in paths])
    with ThreadPoolExecutor(READ_THREADS) as pool:
        return pa.concat_tables(list(pool.map(_read_file, paths)))


def _read_file(path: Path) -> pa.Table:
    """One log file as ``SCHEMA``: read directly when written with it (``read_table``'s
    dataset layer cost a fifth more per file, and its import half a second on the first
    forecast), else through ``read_table``, which fills the columns an older file lacks."""
    table = pq.ParquetFile(path).read()
    return table if table.schema.equals(SCHEMA) else pq.read_table(path, schema=SCHEMA)
