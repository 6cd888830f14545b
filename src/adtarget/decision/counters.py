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
from adtarget.decision.node_breakers import NodeBreakers
from adtarget.decision.redis_client import connect, node_of


def cap_key(cap: FrequencyCap, user_id: str, now: float) -> str:
    """The counter key of ``cap`` for ``user_id`` in the window containing ``now`` (epoch s).

    The user id leads, as the key's hash tag: in a Redis Cluster every counter of a user and
    their profile (``audience/redis_profiles.user_key``, the same tag) share one slot, so the
    ``MGET`` of a decision's candidates and its record pipeline each go to one node.
    """
    bucket = int(now // cap.window_seconds)
    return f"{{{user_id}}}:{cap.level}:{cap.owner_id}:{cap.window_seconds}:{bucket}"


def expiry_of(now: float, window: int) -> float:
    """When the fixed-window bucket containing ``now`` ends (epoch seconds)."""
    return (int(now // window) + 1) * window


class CounterStore(Protocol):
    """Where frequency-cap counters live; implementations raise on store failure, never guess."""

    def counts(self, keys: Sequence[str], now: float) -> list[int]:
        """Current count per key (0 for unknown or expired keys)."""
        ...

    def record(self, keys: Sequence[str], now: float, window: int) -> list[int]:
        """Add one impression to each key (keys expire when their window ends); returns each
        key's count after this increment, in order.

        Why the counts: the increment is atomic in every store, so a caller that reads a count
        above the cap knows another process served the last slot first, and withdraws (the
        engine does): two decision processes never exceed a cap together.
        """
        ...

    def release(self, keys: Sequence[str], now: float) -> None:
        """Take back one impression from each key (never below zero; expired keys untouched).

        Why: an answer withdrawn because another process took the last slot first had already
        incremented every cap key of its line item; without giving those back, the user's
        other caps (campaign, advertiser) would count an impression that was never served.
        """
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

    def record(self, keys: Sequence[str], now: float, window: int) -> list[int]:
        """Increment each key; the counts after."""
        exp = expiry_of(now, window)
        out: list[int] = []
        with self._lock:
            for k in keys:
                hit = self._data.get(k)
                count = hit[0] if hit is not None and hit[1] > now else 0
                self._data[k] = (count + 1, exp)
                out.append(count + 1)
            self._ops += 1
            if self._ops % 10_000 == 0:
                self._data = {k: v for k, v in self._data.items() if v[1] > now}
        return out

    def release(self, keys: Sequence[str], now: float) -> None:
        """Decrement each live key by one (not below zero)."""
        with self._lock:
            for k in keys:
                hit = self._data.get(k)
                if hit is not None and hit[1] > now and hit[0] > 0:
                    self._data[k] = (hit[0] - 1, hit[1])


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

    def record(self, keys: Sequence[str], now: float, window: int) -> list[int]:
        """Upsert-increment each key in one transaction; expired rows restart at 1."""
        if not keys:
            return []
        exp = expiry_of(now, window)
        out: list[int] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for k in keys:
                    row = self._conn.execute(
                        "INSERT INTO cap_counters (key, count, expires_at) VALUES (?, 1, ?) "
                        "ON CONFLICT(key) DO UPDATE SET "
                        " count = CASE WHEN expires_at > ? THEN count + 1 ELSE 1 END,"
                        " expires_at = excluded.expires_at RETURNING count",
                        (k, exp, now),
                    ).fetchone()
                    out.append(int(row[0]))
                self._ops += 1
                if self._ops % 10_000 == 0:
                    self._conn.execute("DELETE FROM cap_counters WHERE expires_at <= ?", (now,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return out

    def release(self, keys: Sequence[str], now: float) -> None:
        """Decrement each live key by one (not below zero), in one transaction."""
        if not keys:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "UPDATE cap_counters SET count = count - 1 "
                    "WHERE key = ? AND expires_at > ? AND count > 0",
                    [(k, now) for k in keys],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


_RELEASE = """
for _, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v and tonumber(v) > 0 then redis.call('DECR', key) end
end
return 0
"""
"""Decrement unless missing or zero (``DECR`` alone would recreate an expired key at -1)."""


class RedisCounters:
    """Counters in Redis or a Redis Cluster (``MGET`` to read, pipelined ``INCR``+``EXPIRE``
    to record), each call through the circuit breaker of the node holding the user's slot.

    A decision's keys are one user's (``cap_key``), hence one slot: one round trip to one node
    either way. Keys of several users in one call are grouped by node.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "adtarget:cap:",
        timeout: float = 0.02,
        cluster: bool | None = None,
    ) -> None:
        self.prefix = prefix
        self._client: Any = connect(
            url, timeout=timeout, needed_by="RedisCounters", cluster=cluster
        )
        self.breakers = NodeBreakers("counters")

    def _by_node(self, keys: Sequence[str]) -> dict[str, list[int]]:
        """Positions of ``keys`` per node (one entry for a single user's keys)."""
        groups: dict[str, list[int]] = {}
        client, prefix = self._client, self.prefix
        slot_of: dict[str, str] = {}
        for i, k in enumerate(keys):
            tag = k[: k.find("}") + 1] if k.startswith("{") else k
            node = slot_of.get(tag)
            if node is None:
                node = slot_of[tag] = node_of(client, prefix + k)
            groups.setdefault(node, []).append(i)
        return groups

    def counts(self, keys: Sequence[str], now: float) -> list[int]:
        """Current count per key (one round trip per node; one node per user)."""
        if not keys:
            return []
        out = [0] * len(keys)
        client = self._client
        for node, where in self._by_node(keys).items():
            names = [self.prefix + keys[i] for i in where]
            raw = self.breakers.guard(node, lambda n=names: client.mget(n))  # type: ignore[misc]
            for i, v in zip(where, raw, strict=True):
                out[i] = int(v) if v is not None else 0
        return out

    def record(self, keys: Sequence[str], now: float, window: int) -> list[int]:
        """Increment each key and set it to expire when its window ends (one round trip per
        node); the counts ``INCR`` returned."""
        if not keys:
            return []
        ttl = max(1, math.ceil(expiry_of(now, window) - now)) + 1  # relative: clock-skew safe
        out = [0] * len(keys)
        for node, where in self._by_node(keys).items():
            pipe = self._client.pipeline(transaction=False)
            for i in where:
                pipe.incr(self.prefix + keys[i])
                pipe.expire(self.prefix + keys[i], ttl)
            replies = self.breakers.guard(node, pipe.execute)
            for i, count in zip(where, replies[::2], strict=True):
                out[i] = int(count)
        return out

    def release(self, keys: Sequence[str], now: float) -> None:
        """Decrement each key by one, atomically never below zero: one script per user (their
        keys share a hash tag, hence a slot; a key that expired meanwhile is not recreated)."""
        if not keys:
            return
        client = self._client
        by_tag: dict[str, list[str]] = {}
        for k in keys:
            tag = k[: k.find("}") + 1] if k.startswith("{") else k
            by_tag.setdefault(tag, []).append(self.prefix + k)
        for names in by_tag.values():
            node = node_of(client, names[0])
            self.breakers.guard(
                node,
                lambda n=names: client.eval(_RELEASE, len(n), *n),  # type: ignore[misc]
            )

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()
