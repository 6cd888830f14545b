"""Decision-time reads of the Redis profiles ``audience/redis_profiles.py`` loads.

Why a reader apart from the writer: decision nodes read one hash per request and never write;
the key layout (and why it is versioned) is documented with the writer. A reader caches the
live version for ``VERSION_TTL_S``, so after a switch it may read the previous version, which
the writer keeps whole for exactly that reason.

Redis Cluster: the user id is the hash tag of the profile key (``user_key``), so a user's
profile and frequency counters share one slot and one node, and ``lookup_user`` reads both in
one round trip (two ``HGETALL`` written at once through ``redis_client.FastPath``). Each read
goes through the breaker of that node (``NodeBreakers``): a dead master degrades only its
users. The version pointer is one key on one node; when it cannot be read the last value read
stays in use (the writer keeps that version whole), so the pointer's node failing degrades
nobody but its own users.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from adtarget.audience.redis_profiles import (
    DEFAULT_PREFIX,
    VERSION_KEY,
    VERSION_TTL_S,
    as_text,
    decode_value,
    user_key,
)
from adtarget.decision.counters import RedisCounters
from adtarget.decision.node_breakers import NodeBreakers
from adtarget.decision.profiles import PublishedCheck
from adtarget.decision.redis_client import FastPath, connect, node_of
from adtarget.errors import StoreUnavailable

log = logging.getLogger(__name__)

UserRead = tuple[dict[str, Any] | None, str | None, dict[str, int] | None]
"""A user's features, the profile version they came from, and every frequency-cap counter of
the user by ``cap_key`` (``None`` when counters were not read with the profile)."""
ReadPlan = tuple[str, str, list[tuple[Any, ...]]]
"""What reading a user takes: the live version, the profile key, the commands."""
GET_MANY_BATCH = 1000
"""Profiles ``RedisProfileStore.get_many`` asks for in one round trip."""


class RedisProfileStore:
    """Reads one hash per user from the version ``{prefix}__version__`` names.

    Values are JSON so numbers, bools and strings keep their type; a JSON list is a set
    dimension (read back as a frozenset).

    Args:
        url: a single Redis, or any node of a Redis Cluster.
        cluster: force cluster mode on or off; ``None`` asks the node.
        counters: the counter store on the same Redis, so ``lookup_user`` reads the user's
            counters with the profile (``factory.stores_from_settings`` passes it).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 0.02,
        cluster: bool | None = None,
        published: Callable[[], str | None] | None = None,
        counters: RedisCounters | None = None,
    ) -> None:
        self.prefix = prefix
        self._url, self._timeout = url, timeout
        self._client: Any = connect(
            url, timeout=timeout, needed_by="RedisProfileStore", cluster=cluster
        )
        self._fast = FastPath(self._client)
        self._counters = counters
        self.breakers = NodeBreakers("profiles")
        self._version: tuple[float, str | None] | None = None
        self._published = PublishedCheck(published)

    def version(self) -> str | None:
        """The live version; re-read at most every ``VERSION_TTL_S`` seconds.

        Raises ``StoreUnavailable`` when Redis has no live version but the catalog records a
        published snapshot: Redis lost its data (restarted empty); the engine answers degraded.
        A failed re-read keeps the version read last (and tries again after ``VERSION_TTL_S``);
        only with nothing read yet does the failure propagate.
        """
        now = time.monotonic()
        cached = self._version
        if cached is not None and now - cached[0] < VERSION_TTL_S:
            if cached[1] is None:
                self._check_nothing_expected(now)
            return cached[1]
        key = self.prefix + VERSION_KEY
        try:
            value = as_text(
                self.breakers.guard(node_of(self._client, key), lambda: self._client.get(key))
            )
        except Exception:
            if cached is None:
                raise
            log.warning("profile version pointer unreadable; serving version %s", cached[1])
            value = cached[1]
        self._version = (now, value)
        if value is None:
            self._check_nothing_expected(now)
        return value

    def _check_nothing_expected(self, now: float) -> None:
        expected = self._published.expected(now)
        if expected is not None:
            raise StoreUnavailable(
                f"Redis holds no live profile version but the catalog records snapshot "
                f"{expected} as published: Redis lost its data (restarted empty?); "
                "reload it with `adtarget profiles push`",
                field="profiles",
            )

    def check(self) -> dict[str, Any]:
        """Readiness of the store: ``{"ok", "store", "version" | "error"}`` (never raises)."""
        self._version = None  # read the pointer now, not the cached one
        try:
            return {"ok": True, "store": "redis", "version": self.version()}
        except Exception as exc:
            return {"ok": False, "store": "redis", "error": str(exc) or type(exc).__name__}

    def lookup(self, user_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The user's features and the version they came from (one ``HGETALL``)."""
        profile, version, _counts = self._read(user_id, None)
        return profile, version

    def lookup_user(
        self, user_id: str
    ) -> tuple[dict[str, Any] | None, str | None, dict[str, int] | None]:
        """The user's features, their version and — when this store was given the counter
        store (``counters=``) — every frequency-cap counter of the user by ``cap_key``: one
        round trip (``HGETALL`` of the profile and of the user's counter hash, written at once
        to the node of the user's slot). Counts are ``None`` without a counter store or a
        live version (the engine then reads counters itself)."""
        return self._read(user_id, self._counters)

    def plan_read(self, user_id: str) -> ReadPlan | None:
        """The live version, the profile key of ``user_id`` and the commands reading the user
        (the profile's ``HGETALL``, and the counter hash's when this store reads counters);
        ``None`` without a live version. Shared by the synchronous read and the event loop's
        (``redis_async.AsyncUserReads``), so both read exactly the same keys."""
        version = self.version()
        if version is None:
            return None
        key = user_key(self.prefix, version, user_id)
        commands: list[tuple[Any, ...]] = [("HGETALL", key)]
        if self._counters is not None:
            commands.append(("HGETALL", self._counters.user_hash(user_id)))
        return version, key, commands

    def target(self, key: str) -> tuple[str, Any]:
        """The node serving ``key`` (its breaker's name) and its connection pool
        (``FastPath.target``)."""
        return self._fast.target(key)

    def decode_read(self, plan: ReadPlan, replies: list[Any]) -> UserRead:
        """The replies to ``plan_read``'s commands as (features, version, counts by
        ``cap_key``); counts are ``None`` when no counters were read."""
        version, _key, commands = plan
        profile = _features(replies[0])
        if len(commands) < 2 or self._counters is None:
            return profile, version, None
        tag = commands[1][1][len(self._counters.prefix) :]
        counts = {tag + f.decode(): int(v) for f, v in _pairs(replies[1])}
        return profile, version, counts

    def _read(self, user_id: str, counters: RedisCounters | None) -> UserRead:
        plan = self.plan_read(user_id)
        if plan is None:
            return None, None, None
        version, key, commands = plan
        if counters is None:
            commands = commands[:1]
        client = self._client

        def slow() -> list[Any]:
            return [client.hgetall(c[1]) for c in commands]

        target = self._fast.target(key)
        replies = self.breakers.guard(target[0], lambda: self._fast.run(target, commands, slow))
        return self.decode_read((version, key, commands), replies)

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The user's features in the live version, or ``None`` if unknown."""
        return self.lookup(user_id)[0]

    def get_many(self, user_ids: Iterable[str]) -> list[dict[str, Any] | None]:
        """``get`` of many users from one version, ``GET_MANY_BATCH`` ``HGETALL`` per round
        trip (a pipeline; in a cluster, one per node): the forecast reads every sampled user's
        profile, 100,000 of them, which one round trip each made seconds of waiting."""
        return _read_many(self._client, self.prefix, self.version(), list(user_ids))

    def fork_reader(self) -> RedisForkReader:
        """A reader for forked processes (``forecast_split``): the live version pinned now,
        and connections of its own opened in the process that reads. Why not this store: a
        child must not use this process's connection pool (another thread may hold its lock
        at the fork, and its sockets would be shared with the parent)."""
        cluster = type(self._client).__name__ == "RedisCluster"
        return RedisForkReader(self._url, self.prefix, self._timeout, cluster, self.version())

    def close(self) -> None:
        """Release the connections."""
        self._fast.close()
        self._client.close()


class RedisForkReader:
    """Profiles of one version, read through a client made on first use (in the forked
    process that reads: ``RedisProfileStore.fork_reader``)."""

    def __init__(
        self, url: str, prefix: str, timeout: float, cluster: bool, version: str | None
    ) -> None:
        self.prefix = prefix
        self._url, self._timeout, self._cluster, self._version = url, timeout, cluster, version
        self._client: Any = None

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The user's features in the pinned version."""
        return self.get_many([user_id])[0]

    def get_many(self, user_ids: Iterable[str]) -> list[dict[str, Any] | None]:
        """``get`` of many users, pipelined as ``RedisProfileStore.get_many``."""
        ids = list(user_ids)
        if self._version is None:
            return [None] * len(ids)
        if self._client is None:
            self._client = connect(
                self._url, timeout=self._timeout, needed_by="RedisProfileStore",
                cluster=self._cluster,
            )  # fmt: skip
        return _read_many(self._client, self.prefix, self._version, ids)

    def version(self) -> str | None:
        """The pinned version."""
        return self._version


def _read_many(
    client: Any, prefix: str, version: str | None, ids: list[str]
) -> list[dict[str, Any] | None]:
    """Every user's profile hash of ``version``, ``GET_MANY_BATCH`` ``HGETALL`` per pipeline."""
    if version is None:
        return [None] * len(ids)
    out: list[dict[str, Any] | None] = []
    for start in range(0, len(ids), GET_MANY_BATCH):
        pipe = client.pipeline(transaction=False)
        for uid in ids[start : start + GET_MANY_BATCH]:
            pipe.hgetall(user_key(prefix, version, uid))
        out.extend(map(_features, pipe.execute()))
    return out


def _pairs(raw: Any) -> Any:
    """A hash reply's (field, value) pairs: a dict in RESP3, a flat list in RESP2."""
    if isinstance(raw, dict):
        return raw.items()
    return zip(raw[::2], raw[1::2], strict=True)


def _features(raw: Any) -> dict[str, Any] | None:
    """A profile hash back to features (JSON values; a JSON list is a set dimension): the
    writer's ``decode_value``, with orjson."""
    if not raw:
        return None
    out: dict[str, Any] = {}
    for k, v in _pairs(raw):
        try:
            value = orjson.loads(v)
        except orjson.JSONDecodeError:  # what orjson refuses and json takes (NaN, Infinity)
            value = decode_value(v)
        out[k.decode()] = frozenset(value) if isinstance(value, list) else value
    return out
