"""Frequency-cap counters: in process, SQLite (shared by worker processes), Redis (shared by nodes).

Window semantics (documented choice): **fixed windows**. A cap of N per W seconds counts
impressions in the bucket ``floor(now / W)``; the bucket number is part of the key, so a counter
never needs resetting — it simply expires after its window. A fixed window can let up to 2N
through across a bucket boundary; in exchange a check is one read per key (a Redis ``MGET``), and
a record is one ``INCR`` + ``EXPIRE``, which a sliding log (a sorted set per user) cannot match.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from adtarget.decision.models import FrequencyCap
from adtarget.decision.redis_client import connect


def cap_key(cap: FrequencyCap, user_id: str, now: float) -> str:
    """The counter key of ``cap`` for ``user_id`` in the window containing ``now`` (epoch s)."""
    bucket = int(now // cap.window_seconds)
    return f"{cap.level}:{cap.owner_id}:{cap.window_seconds}:{bucket}:{user_id}"


def expiry_of(now: float, window: int) -> float:
    """When the fixed-window bucket containing ``now`` ends (epoch seconds)."""
    return (int(now // window) + 1) * window


class CounterStore(Protocol):
    """Where frequency-cap counters live; implementations raise on store failure, never guess."""

    def counts(self, keys: Sequence[str], now: float) -> list[int]:
        """Current count per key (0 for unknown or expired keys)."""
        ...

    def record(self, keys: Sequence[str], now: float, window: int) -> None:
        """Add one impression to each key; keys expire when their window ends."""
        ...


class MemoryCounters:
    """Per-process counters (tests, single-process embedded use); expired keys purged lazily."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, tuple[int, float]] = {}
        self._ops = 0

    def counts(self, keys: Sequence[str], now: float) -> list[int]:
        """Current count per key."""
        with self._lock:
            out = []
            for k in keys:
                hit = self._data.get(k)
                out.append(hit[0] if hit is not None and hit[1] > now else 0)
            return out

    def record(self, keys: Sequence[str], now: float, window: int) -> None:
        """Increment each key."""
        exp = expiry_of(now, window)
        with self._lock:
            for k in keys:
                hit = self._data.get(k)
                count = hit[0] if hit is not None and hit[1] > now else 0
                self._data[k] = (count + 1, exp)
            self._ops += 1
            if self._ops % 10_000 == 0:
                self._data = {k: v for k, v in self._data.items() if v[1] > now}


class SqliteCounters:
    """Counters in a SQLite file: survive restarts, shared by ``serve --workers N`` on one box."""

    def __init__(self, path: str | Path, *, timeout_s: float = 0.05) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=timeout_s, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS cap_counters ("
            " key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at REAL NOT NULL)"
        )
        self._ops = 0

    def counts(self, keys: Sequence[str], now: float) -> list[int]:
        """Current count per key (one query)."""
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT key, count FROM cap_counters WHERE key IN ({marks}) AND expires_at > ?",
                (*keys, now),
            ).fetchall()
        found = dict(rows)
        return [int(found.get(k, 0)) for k in keys]

    def record(self, keys: Sequence[str], now: float, window: int) -> None:
        """Upsert-increment each key in one transaction; expired rows restart at 1."""
        if not keys:
            return
        exp = expiry_of(now, window)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO cap_counters (key, count, expires_at) VALUES (?, 1, ?) "
                    "ON CONFLICT(key) DO UPDATE SET "
                    " count = CASE WHEN expires_at > ? THEN count + 1 ELSE 1 END,"
                    " expires_at = excluded.expires_at",
                    [(k, exp, now) for k in keys],
                )
                self._ops += 1
                if self._ops % 10_000 == 0:
                    self._conn.execute("DELETE FROM cap_counters WHERE expires_at <= ?", (now,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


class RedisCounters:
    """Counters in Redis (``MGET`` to read, pipelined ``INCR``+``EXPIRE`` to record)."""

    def __init__(self, url: str, *, prefix: str = "adtarget:cap:", timeout: float = 0.02) -> None:
        self.prefix = prefix
        self._client: Any = connect(url, timeout=timeout, needed_by="RedisCounters")

    def counts(self, keys: Sequence[str], now: float) -> list[int]:
        """Current count per key (one round trip)."""
        if not keys:
            return []
        raw = self._client.mget([self.prefix + k for k in keys])
        return [int(v) if v is not None else 0 for v in raw]

    def record(self, keys: Sequence[str], now: float, window: int) -> None:
        """Increment each key and set it to expire when its window ends (one round trip)."""
        if not keys:
            return
        ttl = max(1, math.ceil(expiry_of(now, window) - now)) + 1  # relative: clock-skew safe
        pipe = self._client.pipeline(transaction=False)
        for k in keys:
            pipe.incr(self.prefix + k)
            pipe.expire(self.prefix + k, ttl)
        pipe.execute()

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()
