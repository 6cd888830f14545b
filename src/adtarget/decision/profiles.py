"""Where a user's features come from at decision time: the audience snapshot, or Redis.

Why two: the embedded default reads the memory-mapped snapshot every worker already has; at
scale (many nodes, profiles larger than one machine) the features live in Redis, one hash per
user, loaded from the same snapshot (``decision/profiles_redis.py``). Stores raise on failure
(timeouts, connection refused); the engine's circuit breaker turns that into a degraded answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, cast

from adtarget.audience.sharded import AnySnapshot
from adtarget.audience.store import SnapshotStore
from adtarget.errors import StoreUnavailable

log = logging.getLogger(__name__)


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

    def get_many(self, user_ids: Iterable[str]) -> list[Mapping[str, Any] | None]:
        """Each user's features as stored, read-only (not copies), in one call: the forecast
        reads every sampled user's profile, and a call and a copy per user were a fifth of a
        warm forecast. A caller that keeps one past its own use copies it."""
        return list(map(self.profiles.get, user_ids))

    def fork_reader(self) -> MemoryProfileStore:
        """A reader for forked processes (``forecast_split``): this store (a mapping takes
        no lock a thread of the parent could have held when it forked)."""
        return self

    def version(self) -> str | None:
        """The label given at construction."""
        return self._version


class PinnedProfiles:
    """Features from one snapshot handle, as resolved when made (``fork_reader``)."""

    def __init__(self, snap: AnySnapshot | None) -> None:
        self._snap = snap

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The user's features in that snapshot."""
        return None if self._snap is None else self._snap.features_of(user_id)

    def get_many(self, user_ids: Iterable[str]) -> list[Mapping[str, Any] | None]:
        """``get`` of each user."""
        return _features_many(self._snap, user_ids)

    def version(self) -> str | None:
        """That snapshot's version."""
        return None if self._snap is None else self._snap.version


def _features_many(
    snap: AnySnapshot | None, user_ids: Iterable[str]
) -> list[Mapping[str, Any] | None]:
    """Each user's features in ``snap``: its batch read where it has one (a snapshot, live or
    not: a column at a time), else one by one (a sharded snapshot reads each user's shard)."""
    if snap is None:
        return [None for _ in user_ids]
    many = getattr(snap, "features_many", None)
    if many is None:
        return list(map(snap.features_of, user_ids))
    return cast(list[Mapping[str, Any] | None], many(list(user_ids)))


SNAPSHOT_CHECK_S = 0.05
"""How often ``SnapshotProfileStore`` asks the snapshot store whether ``CURRENT`` moved."""


EXPECTED_CHECK_S = 5.0
"""How often a store with nothing to serve asks the catalog whether something should exist."""


class PublishedCheck:
    """ "Should there be a snapshot?": the catalog's newest published one, asked at most every
    ``EXPECTED_CHECK_S`` while a store has nothing to serve (both profile stores use it).

    A catalog that cannot be asked counts as "none expected": the store keeps its old answer
    rather than failing because of another store.
    """

    def __init__(self, published: Callable[[], str | None] | None) -> None:
        self._published = published
        self._expected: tuple[float, str | None] | None = None

    def expected(self, now: float) -> str | None:
        """The published version that should be there, or ``None``."""
        if self._published is None:
            return None
        if self._expected is None or now - self._expected[0] >= EXPECTED_CHECK_S:
            try:
                expected = self._published()
            except Exception as exc:  # catalog down: cannot tell, keep the old behaviour
                log.warning("cannot ask the catalog whether a snapshot exists: %s", exc)
                expected = None
            self._expected = (now, expected)
        return self._expected[1]


class SnapshotProfileStore:
    """Features from the current published snapshot (picks up new versions by itself).

    Why a cached handle: ``SnapshotStore.current()`` stats the ``CURRENT`` pointer file, which
    cost a syscall (twice: features and version) on every decision. The handle is re-checked at
    most every ``check_s`` seconds, so a newly published snapshot reaches decisions within that
    time (the catalog index itself is polled every 2 s). Before the first publish every call
    checks again, so the first snapshot is seen at once.

    ``published()`` (the catalog's newest published snapshot) tells "nothing uploaded yet" from
    "the snapshot directory is missing": in the second case lookups raise ``StoreUnavailable``,
    so the engine answers degraded (rules reading profile dimensions do not match) instead of
    treating every user as unknown, which would serve ``country not in ("CA")`` to Canadians.
    """

    def __init__(
        self,
        snapshot_store: SnapshotStore,
        *,
        check_s: float = SNAPSHOT_CHECK_S,
        published: Callable[[], str | None] | None = None,
    ) -> None:
        self.snapshot_store = snapshot_store
        self.check_s = check_s
        self._published = PublishedCheck(published)
        self._snap: AnySnapshot | None = None
        self._checked_at = 0.0

    def _current(self) -> AnySnapshot | None:
        now = time.monotonic()
        snap = self._snap
        if snap is None or now - self._checked_at >= self.check_s:
            snap = self._snap = self.snapshot_store.current()
            self._checked_at = now
        if snap is None:
            self._check_nothing_expected(now)
        return snap

    def _check_nothing_expected(self, now: float) -> None:
        version = self._published.expected(now)
        if version is not None:
            raise StoreUnavailable(
                f"the catalog records snapshot {version} as published, but "
                f"{self.snapshot_store.root} has none",
                field="snapshot",
            )

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The user's features in the current snapshot."""
        snap = self._current()
        if snap is None:
            return None
        return snap.features_of(user_id)  # a sharded snapshot reads the user's shard

    def get_many(self, user_ids: Iterable[str]) -> list[Mapping[str, Any] | None]:
        """``get`` of each user from one snapshot handle (one version for the whole batch: the
        forecast reads every sampled user's profile at once)."""
        return _features_many(self._current(), user_ids)

    def version(self) -> str | None:
        """The current snapshot's version."""
        snap = self._current()
        return None if snap is None else snap.version

    def fork_reader(self) -> PinnedProfiles:
        """A reader of the snapshot current now, for forked processes (``forecast_split``).

        Why: finding the current snapshot may take the store's and the real-time overlay's
        locks, which another thread of this process (the update follower, a request) may hold
        when a forecast forks; a child waiting on a lock no thread of its own will release
        hangs. The handle is resolved here, before the fork: reading features from it takes
        no lock, and the whole forecast reads one version."""
        return PinnedProfiles(self._current())

    def lookup(self, user_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """``(get(user_id), version())`` from one snapshot handle (what the engine calls)."""
        snap = self._current()
        if snap is None:
            return None, None
        return snap.features_of(user_id), snap.version
