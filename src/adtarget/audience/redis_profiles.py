"""User profiles in Redis: an audience snapshot copied under its version, switched to atomically.

Why versioned keys: the first layout replaced each user's hash in place, so during a load
decisions saw a mix of two snapshots, and a user dropped by a ``replace`` upload kept serving
their old features forever (nothing deleted them). Now a snapshot's users are written under
their own version, ``{prefix}{version}:u:{user_id}``, and become live in one step, the ``SET``
of ``{prefix}__version__``: readers see the old snapshot whole, then the new one whole, and a
user absent from the new snapshot is unknown (context-only matching), exactly as with the
snapshot files.

Costs and rules:
- two versions live in Redis at once (the current and the one before it), because readers cache
  the pointer for up to ``VERSION_TTL_S`` and must still find their keys; older versions are
  deleted after each load (``SCAN`` + ``UNLINK``, never ``KEYS``);
- ``{prefix}__loaded__`` records the versions fully written (version → users), so pushing a
  version that is still in Redis (an undo, a redo, a rollback) only moves the pointer;
- one load at a time per prefix, under a Redis lock renewed while the load runs, so a prune
  never deletes the keys of a load in progress; a load names its version in
  ``{prefix}__loading__`` before writing, so one that died leaves its keys to the next load's
  prune (which therefore never has to scan for versions it does not know).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from adtarget.audience.store import SnapshotStore
from adtarget.errors import AdtargetError, InvalidValue

DEFAULT_PREFIX = "adtarget:profile:"
"""The key prefix decisions read (``ADTARGET_PROFILE_STORE=redis``)."""
VERSION_KEY = "__version__"
LOADED_KEY = "__loaded__"
LOADING_KEY = "__loading__"
LOCK_KEY = "__load_lock__"
VERSION_TTL_S = 5.0
"""How long a reader trusts its cached pointer (one ``GET`` per ``VERSION_TTL_S`` per worker)."""
LOCK_TTL_S = 60.0
"""A dead loader's lock expires after this; a live one renews it every batch."""


def user_key(prefix: str, version: str, user_id: str) -> str:
    """The hash holding one user's features in one loaded version.

    The user id is the key's hash tag (``{...}``): in a Redis Cluster a user's profile and
    frequency counters (``decision/counters.py``, the same tag) share one slot, so a decision
    talks to one node. A single Redis ignores the braces.
    """
    return f"{prefix}{version}:u:{{{user_id}}}"


def _encode(value: Any) -> str:
    if isinstance(value, frozenset | set | list | tuple):
        return json.dumps(sorted(str(v) for v in value))
    return json.dumps(value.item() if hasattr(value, "item") else value)


def decode_value(raw: bytes | str) -> Any:
    """A stored JSON value back to Python (a JSON list is a set dimension: a frozenset)."""
    value = json.loads(raw)
    return frozenset(value) if isinstance(value, list) else value


def as_text(raw: bytes | str | None) -> str | None:
    """A Redis reply as ``str`` (the client returns bytes unless told to decode)."""
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisLoad(NamedTuple):
    """What a load did: the live version, its users, and whether it only moved the pointer."""

    version: str
    users: int
    repointed: bool


def load_profiles_into_redis(
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    client: Any,
    *,
    version: str,
    prefix: str = DEFAULT_PREFIX,
    batch: int = 1000,
    reuse: bool = True,
) -> RedisLoad:
    """Write ``(user_id, features)`` rows as ``version`` and make it live in one ``SET``.

    With ``reuse`` and ``version`` already fully loaded, ``rows`` is not read: the pointer moves.
    """
    with client.lock(prefix + LOCK_KEY, timeout=LOCK_TTL_S, blocking_timeout=LOCK_TTL_S) as lock:
        previous = as_text(client.get(prefix + VERSION_KEY))
        loaded = as_text(client.hget(prefix + LOADED_KEY, version))
        if reuse and loaded is not None:
            client.set(prefix + VERSION_KEY, version)
            _prune(client, prefix, keep={version, previous}, batch=batch)
            return RedisLoad(version, int(loaded), repointed=True)
        client.hdel(prefix + LOADED_KEY, version)  # a partial earlier load is not "loaded"
        client.sadd(prefix + LOADING_KEY, version)
        pipe = client.pipeline(transaction=False)
        n = 0
        for user_id, features in rows:
            key = user_key(prefix, version, user_id)
            mapping = {k: _encode(v) for k, v in features.items() if v is not None}
            pipe.delete(key)
            if mapping:  # a featureless user has no hash: unknown, the same answer (no features)
                pipe.hset(key, mapping=mapping)
            n += 1
            if n % batch == 0:
                pipe.execute()
                lock.reacquire()
        pipe.hset(prefix + LOADED_KEY, version, n)
        pipe.srem(prefix + LOADING_KEY, version)
        pipe.set(prefix + VERSION_KEY, version)  # the switch
        pipe.execute()
        _prune(client, prefix, keep={version, previous}, batch=batch)
    return RedisLoad(version, n, repointed=False)


def _prune(client: Any, prefix: str, *, keep: set[str | None], batch: int) -> list[str]:
    """Delete every version but ``keep``: loaded ones and leftovers of loads that died.

    Runs under the load lock, so no other load is writing. ``SCAN`` visits the whole keyspace
    per dropped version (Redis has no prefix index); ``UNLINK`` frees memory off the main thread.
    """
    versions = {as_text(v) for v in client.hkeys(prefix + LOADED_KEY)}
    versions |= {as_text(v) for v in client.smembers(prefix + LOADING_KEY)}
    dropped = sorted(v for v in versions if v is not None and v not in keep)
    for version in dropped:
        doomed: list[Any] = []
        for key in client.scan_iter(match=f"{_glob_escape(prefix + version)}:u:*", count=batch):
            doomed.append(key)
            if len(doomed) >= batch:
                client.unlink(*doomed)
                doomed = []
        if doomed:
            client.unlink(*doomed)
        client.hdel(prefix + LOADED_KEY, version)
        client.srem(prefix + LOADING_KEY, version)
    return dropped


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def load_snapshot_into_redis(
    snapshot: Any,
    client: Any,
    *,
    prefix: str = DEFAULT_PREFIX,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> RedisLoad:
    """Make every live user of an audience ``Snapshot`` the live Redis profiles.

    ``progress(ordinals_done)`` is called every 10,000 ordinals (the CLI's progress bar).
    """

    # a sharded snapshot is loaded shard after shard (a user's features live in its shard)
    parts = getattr(snapshot, "shards", None) or [snapshot]

    def rows() -> Iterable[tuple[str, Mapping[str, Any]]]:
        done = 0
        for part in parts:
            for ordinal in range(part.num_ordinals):
                if part.is_alive(ordinal):
                    yield part.user_id_of(ordinal), part.features(ordinal)
                if progress is not None and (done + ordinal) % 10_000 == 0:
                    progress(done + ordinal)
            done += part.num_ordinals

    return load_profiles_into_redis(
        rows(), client, version=snapshot.version, prefix=prefix, batch=batch
    )


def _redis(
    missing: str = "Redis profiles need the redis client: pip install 'adtarget[redis]'",
) -> Any:
    """The ``redis`` module, imported here only: an extra the embedded default never loads."""
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - the redis extra installs it
        raise ImportError(missing) from exc
    return redis


def bounded_retry(attempts: int, *, base_s: float, cap_s: float, missing: str) -> Any:
    """redis-py's ``Retry``: ``attempts`` extra tries, backing off from ``base_s`` to ``cap_s``."""
    _redis(missing)
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return Retry(ExponentialBackoff(cap=cap_s, base=base_s), attempts)


def connection_errors() -> tuple[type[Exception], ...]:
    """What redis-py raises when the server cannot be reached (down, or too slow)."""
    redis = _redis()
    return (redis.ConnectionError, redis.TimeoutError)


def open_client(url: str, *, cluster: bool | None = None, **options: Any) -> Any:
    """A ``redis.Redis``, or a ``redis.cluster.RedisCluster`` when ``url`` names a cluster node.

    ``cluster=None`` asks the node (``INFO cluster``: ``cluster_enabled``), so
    ``ADTARGET_REDIS_URL`` may name any node of a cluster; ``True``/``False`` forces the mode
    (``ADTARGET_REDIS_CLUSTER``). ``options`` go to the client (timeouts, ``retry``). The writer
    here and the decision stores (``decision/redis_client.py``) open Redis only through this.
    """
    redis = _redis()
    if cluster is None:
        probe = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            cluster = bool(int(probe.info("cluster").get("cluster_enabled", 0)))
        finally:
            probe.close()
    if cluster:
        from redis.cluster import RedisCluster

        # one failed shard must not stop the others: serve the slots that still have a master
        options.setdefault("require_full_coverage", False)
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def push_current_profiles(
    store: SnapshotStore,
    redis_url: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    progress: Callable[[int], None] | None = None,
    cluster: bool | None = None,
) -> RedisLoad:
    """Make Redis serve the snapshot ``CURRENT`` points at (a no-op pointer move if loaded)."""
    redis = _redis()
    snapshot = store.current()
    if snapshot is None:
        raise InvalidValue(
            "no audience snapshot is published yet: run `adtarget ingest` first", field="snapshot"
        )
    try:
        client = open_client(redis_url, cluster=cluster)
    except redis.RedisError as exc:
        raise AdtargetError(f"redis at {redis_url}: {exc}", field="redis_url") from None
    try:
        return load_snapshot_into_redis(snapshot, client, prefix=prefix, progress=progress)
    except redis.RedisError as exc:
        raise AdtargetError(f"redis at {redis_url}: {exc}", field="redis_url") from None
    finally:
        client.close()


def write_live_users(
    client: Any, delta: Any, user_ids: Iterable[str], *, prefix: str = DEFAULT_PREFIX
) -> int:
    """Write these users' current features (a ``Delta``'s view) into the Redis version that
    matches the delta's base, so Redis-backed decisions see a profile update at once.

    Skipped (returns 0) while Redis serves another version: a snapshot switch is loading, and
    that load copies the live features itself. A deleted user's hash is removed.
    """
    version = delta.base.version
    if as_text(client.get(prefix + VERSION_KEY)) != version:
        return 0
    pipe = client.pipeline(transaction=False)
    n = 0
    for user_id in set(user_ids):
        key = user_key(prefix, version, user_id)
        features = delta.features_of(user_id)  # a Delta, or a ShardedDelta routing by user
        pipe.delete(key)
        mapping = {k: _encode(v) for k, v in (features or {}).items() if v is not None}
        if mapping:
            pipe.hset(key, mapping=mapping)
        n += 1
    pipe.execute()
    return n
