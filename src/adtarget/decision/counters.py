"""Frequency-cap counters: in process, SQLite (shared by worker processes), Redis (shared by nodes).

Window semantics (documented choice): **fixed windows**. A cap of N per W seconds counts
impressions in the bucket ``floor(now / W)``; the bucket number is part of the key, so a counter
never needs resetting — it simply expires after its window. A fixed window can let up to 2N
through across a bucket boundary; in exchange a check is one read (in Redis a field of the
user's counter hash, read with the profile) and a record one increment, which a sliding log (a
sorted set per user) cannot match.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from adtarget.decision.models import FrequencyCap
from adtarget.decision.node_breakers import NodeBreakers
from adtarget.decision.redis_client import FastPath, connect


def cap_key(cap: FrequencyCap, user_id: str, now: float) -> str:
    """The counter key of ``cap`` for ``user_id`` in the window containing ``now`` (epoch s).

    The user id leads, as the key's hash tag: in Redis every counter of a user is a field of one
    hash (``split_key``), and in a Redis Cluster that hash and the user's profile
    (``audience/redis_profiles.user_key``, the same tag) share one slot, so a decision reads
    both in one round trip to one node and records with one script there.
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

    def user_counts(self, user_id: str, now: float) -> dict[str, int]:
        """Every live counter of ``user_id`` (one range read on the primary key).

        Why: a break walks past many capped candidates; reading the user's few counters once
        (every ``cap_key`` of the user starts with ``{user_id}:``) replaces one ``IN`` query per
        capped candidate, as the Redis store's ``lookup_user`` does with the profile.
        """
        low = f"{{{user_id}}}:"
        high = low[:-1] + ";"  # the next character after ":": every key of the user sorts below
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, count FROM cap_counters WHERE key >= ? AND key < ? AND expires_at > ?",
                (low, high, now),
            ).fetchall()
        return {k: int(c) for k, c in rows}

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


def split_key(key: str) -> tuple[str, str]:
    """A counter key as (its Redis hash, its field in that hash).

    Why: one hash per user (``{<user_id>}``, the key's hash tag) holds every counter of that
    user as fields ``:<level>:<owner>:<window>:<bucket>``, so a decision reads all of a user's
    counters with the profile in one round trip (``profiles_redis.RedisProfileStore
    .lookup_user``), whichever line items it ends up walking. A key without a leading tag is a
    hash of its own with the field ``""``. ``hash + field`` is the key again.
    """
    end = key.find("}") + 1 if key.startswith("{") else 0
    return (key[:end], key[end:]) if end > 1 else (key, "")


_RECORD = """
local key, ttl, now = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do out[#out + 1] = redis.call('HINCRBY', key, ARGV[i], 1) end
if redis.call('HLEN', key) > #ARGV - 2 then
  for _, f in ipairs(redis.call('HKEYS', key)) do
    local w, b = string.match(f, ':(%d+):(%d+)$')
    if w and (tonumber(b) + 1) * tonumber(w) <= now then redis.call('HDEL', key, f) end
  end
end
if redis.call('TTL', key) < ttl then redis.call('EXPIRE', key, ttl) end
return out
"""
"""Increment the fields; drop the fields of windows that have ended (the hash lives as long as
its longest window, so a busy user's ended buckets would pile up); keep the longest TTL."""

_RELEASE = """
for i = 1, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and tonumber(v) > 0 then redis.call('HINCRBY', KEYS[1], ARGV[i], -1) end
end
return 0
"""
"""Decrement unless missing or zero (``HINCRBY -1`` alone would create the field at -1)."""


class _Script:
    """A Lua script run by ``EVALSHA`` on the fast path; on ``NOSCRIPT`` (a restarted or
    promoted node) the slow path sends the source with ``EVAL``, which caches it again."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class RedisCounters:
    """Counters in Redis or a Redis Cluster: one hash per user (``split_key``), read with
    ``HMGET``, recorded and released by Lua scripts, each call one round trip to the node
    holding the user's slot, through that node's circuit breaker.

    Calls go through ``redis_client.FastPath`` (one write and one read on this thread's own
    connection; redis-py's full path on anything unusual).
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
        self._fast = FastPath(self._client)
        self.breakers = NodeBreakers("counters")
        self._record = _Script(_RECORD)
        self._release = _Script(_RELEASE)

    def user_hash(self, user_id: str) -> str:
        """The Redis key of the hash holding ``user_id``'s counters (``cap_key``'s tag)."""
        return self.prefix + split_key(f"{{{user_id}}}:")[0]

    def _by_hash(self, keys: Sequence[str]) -> dict[str, list[tuple[int, str]]]:
        """(position, field) of ``keys`` per hash (one entry for a single user's keys)."""
        groups: dict[str, list[tuple[int, str]]] = {}
        for i, k in enumerate(keys):
            name, field = split_key(k)
            groups.setdefault(self.prefix + name, []).append((i, field))
        return groups

    def _call(self, name: str, command: tuple[Any, ...], slow: Callable[[], Any]) -> Any:
        target = self._fast.target(name)
        return self.breakers.guard(
            target[0], lambda: self._fast.run(target, [command], lambda: [slow()])[0]
        )

    def _eval(self, script: _Script, name: str, args: list[Any]) -> Any:
        client = self._client
        return self._call(
            name,
            ("EVALSHA", script.sha, 1, name, *args),
            lambda: client.eval(script.source, 1, name, *args),
        )

    def counts(self, keys: Sequence[str], now: float) -> list[int]:
        """Current count per key (one ``HMGET`` per user)."""
        out = [0] * len(keys)
        client = self._client
        for name, where in self._by_hash(keys).items():
            fields = [f for _, f in where]
            raw = self._call(
                name,
                ("HMGET", name, *fields),
                lambda n=name, f=fields: client.hmget(n, f),  # type: ignore[misc]
            )
            for (i, _), v in zip(where, raw, strict=True):
                out[i] = int(v) if v is not None else 0
        return out

    def record(self, keys: Sequence[str], now: float, window: int) -> list[int]:
        """Increment each key, the user's hash to expire when its longest window ends (one
        script per user); the counts the increments returned."""
        ttl = max(1, math.ceil(expiry_of(now, window) - now)) + 1  # relative: clock-skew safe
        out = [0] * len(keys)
        for name, where in self._by_hash(keys).items():
            replies = self._eval(self._record, name, [ttl, repr(now), *(f for _, f in where)])
            for (i, _), count in zip(where, replies, strict=True):
                out[i] = int(count)
        return out

    def release(self, keys: Sequence[str], now: float) -> None:
        """Decrement each key by one, atomically never below zero: one script per user (a
        counter that is gone is not recreated)."""
        for name, where in self._by_hash(keys).items():
            self._eval(self._release, name, [f for _, f in where])

    def close(self) -> None:
        """Release the connections."""
        self._fast.close()
        self._client.close()
