"""Where a user's features come from at decision time: the audience snapshot, or Redis.

Why two: the embedded default reads the memory-mapped snapshot every worker already has; at
scale (many nodes, profiles larger than one machine) the features live in Redis, one hash per
user, loaded from the same snapshot by ``load_snapshot_into_redis``. Stores raise on failure
(timeouts, connection refused); the engine's circuit breaker turns that into a degraded answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import SnapshotStore


class ProfileStore(Protocol):
    """User features by user id; ``None`` for an unknown user."""

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The user's features (set dimensions as frozensets), or ``None`` if unknown."""
        ...

    def version(self) -> str | None:
        """The snapshot version the features come from (reported in each decision)."""
        ...


def merge_features(profile: Mapping[str, Any] | None, context: Mapping[str, Any]) -> dict[str, Any]:
    """Profile merged with request context, context winning; list values become frozensets."""
    out: dict[str, Any] = dict(profile) if profile else {}
    for k, v in context.items():
        out[k] = frozenset(v) if isinstance(v, list | tuple | set) else v
    return out


class EmptyProfileStore:
    """No profiles at all: every user gets context-only matching (no snapshot published yet)."""

    def get(self, user_id: str) -> dict[str, Any] | None:
        """Always unknown."""
        return None

    def version(self) -> str | None:
        """No snapshot."""
        return None


class MemoryProfileStore:
    """Profiles from a dict (embedding, tests, benchmarks)."""

    def __init__(
        self, profiles: Mapping[str, Mapping[str, Any]], *, version: str = "memory"
    ) -> None:
        self.profiles = profiles
        self._version = version

    def get(self, user_id: str) -> dict[str, Any] | None:
        """A copy of the user's features, or ``None``."""
        found = self.profiles.get(user_id)
        return dict(found) if found is not None else None

    def version(self) -> str | None:
        """The label given at construction."""
        return self._version


SNAPSHOT_CHECK_S = 0.05
"""How often ``SnapshotProfileStore`` asks the snapshot store whether ``CURRENT`` moved."""


class SnapshotProfileStore:
    """Features from the current published snapshot (picks up new versions by itself).

    Why a cached handle: ``SnapshotStore.current()`` stats the ``CURRENT`` pointer file, which
    cost a syscall (twice: features and version) on every decision. The handle is re-checked at
    most every ``check_s`` seconds, so a newly published snapshot reaches decisions within that
    time (the catalog index itself is polled every 2 s). Before the first publish every call
    checks again, so the first snapshot is seen at once.
    """

    def __init__(self, snapshot_store: SnapshotStore, *, check_s: float = SNAPSHOT_CHECK_S) -> None:
        self.snapshot_store = snapshot_store
        self.check_s = check_s
        self._snap: Snapshot | None = None
        self._checked_at = 0.0

    def _current(self) -> Snapshot | None:
        now = time.monotonic()
        snap = self._snap
        if snap is None or now - self._checked_at >= self.check_s:
            snap = self._snap = self.snapshot_store.current()
            self._checked_at = now
        return snap

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The user's features in the current snapshot."""
        snap = self._current()
        if snap is None:
            return None
        ordinal = snap.ordinal_of(user_id)
        return None if ordinal is None else snap.features(ordinal)

    def version(self) -> str | None:
        """The current snapshot's version."""
        snap = self._current()
        return None if snap is None else snap.version

    def lookup(self, user_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """``(get(user_id), version())`` from one snapshot handle (what the engine calls)."""
        snap = self._current()
        if snap is None:
            return None, None
        ordinal = snap.ordinal_of(user_id)
        return (None if ordinal is None else snap.features(ordinal)), snap.version


def _encode(value: Any) -> str:
    if isinstance(value, frozenset | set | list | tuple):
        return json.dumps(sorted(str(v) for v in value))
    return json.dumps(value.item() if hasattr(value, "item") else value)


def _decode(raw: bytes | str) -> Any:
    value = json.loads(raw)
    return frozenset(value) if isinstance(value, list) else value


VERSION_KEY = "__version__"
VERSION_TTL_S = 5.0


class RedisProfileStore:
    """One Redis hash per user: ``{prefix}u:{user_id}`` → ``{dimension: JSON value}``.

    Values are JSON so numbers, bools and strings keep their type; a JSON list is a set
    dimension (read back as a frozenset). ``{prefix}__version__`` names the loaded snapshot.
    """

    def __init__(
        self, url: str, *, prefix: str = "adtarget:profile:", timeout: float = 0.02
    ) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the redis extra installs it
            raise ImportError(
                "RedisProfileStore needs the redis client: pip install 'adtarget[redis]'"
            ) from exc
        self.prefix = prefix
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._version: tuple[float, str | None] | None = None

    def get(self, user_id: str) -> dict[str, Any] | None:
        """One ``HGETALL``; an empty hash means an unknown user."""
        raw: dict[bytes, bytes] = self._client.hgetall(f"{self.prefix}u:{user_id}")
        if not raw:
            return None
        return {k.decode(): _decode(v) for k, v in raw.items()}

    def version(self) -> str | None:
        """The snapshot version last loaded; re-read at most every ``VERSION_TTL_S`` seconds."""
        now = time.monotonic()
        if self._version is not None and now - self._version[0] < VERSION_TTL_S:
            return self._version[1]
        raw = self._client.get(self.prefix + VERSION_KEY)
        value = raw.decode() if raw is not None else None
        self._version = (now, value)
        return value

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()


def load_profiles_into_redis(
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    client: Any,
    *,
    prefix: str = "adtarget:profile:",
    version: str | None = None,
    batch: int = 1000,
) -> int:
    """Write ``(user_id, features)`` rows as hashes (replacing each user's hash); returns count."""
    pipe = client.pipeline(transaction=False)
    n = 0
    for user_id, features in rows:
        key = f"{prefix}u:{user_id}"
        mapping = {k: _encode(v) for k, v in features.items() if v is not None}
        pipe.delete(key)
        if mapping:
            pipe.hset(key, mapping=mapping)
        n += 1
        if n % batch == 0:
            pipe.execute()
    if version is not None:
        pipe.set(prefix + VERSION_KEY, version)
    pipe.execute()
    return n


def load_snapshot_into_redis(
    snapshot: Any,
    client: Any,
    *,
    prefix: str = "adtarget:profile:",
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy every live user of an audience ``Snapshot`` into Redis; returns users written.

    ``progress(ordinals_done)`` is called every 10,000 ordinals (the CLI's progress bar).
    """

    def rows() -> Iterable[tuple[str, Mapping[str, Any]]]:
        for ordinal in range(snapshot.num_ordinals):
            if snapshot.is_alive(ordinal):
                yield snapshot.user_id_of(ordinal), snapshot.features(ordinal)
            if progress is not None and ordinal % 10_000 == 0:
                progress(ordinal)

    return load_profiles_into_redis(
        rows(), client, prefix=prefix, version=snapshot.version, batch=batch
    )
