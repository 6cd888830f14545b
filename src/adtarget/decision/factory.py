"""Pick the profile and counter stores named in settings (``snapshot``|``redis``,
``memory``|``sqlite``|``redis``), so the engine above sees only the protocols.
"""

from __future__ import annotations

from collections.abc import Callable

from adtarget.audience.store import SnapshotStore
from adtarget.decision.counters import CounterStore, MemoryCounters, RedisCounters, SqliteCounters
from adtarget.decision.profiles import ProfileStore, SnapshotProfileStore
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.errors import InvalidValue
from adtarget.settings import Settings

COUNTER_PREFIX = "adtarget:cap:"


def _redis_url(settings: Settings, what: str) -> str:
    if not settings.redis_url:
        raise InvalidValue(
            f"{what} is 'redis' but ADTARGET_REDIS_URL is not set", field="redis_url"
        )
    return settings.redis_url


def profiles_from_settings(
    settings: Settings,
    snapshot_store: SnapshotStore | None = None,
    *,
    published: Callable[[], str | None] | None = None,
    counters: CounterStore | None = None,
) -> ProfileStore:
    """``snapshot`` (default: the data dir's published snapshots) or ``redis``.

    ``published`` names the snapshot the catalog says is live (``SnapshotProfileStore``).
    ``counters``: the engine's counter store; when it is Redis too (the same
    ``ADTARGET_REDIS_URL``), the profile store reads a user's counters with their profile in
    one round trip (``RedisProfileStore.lookup_user``).
    """
    if settings.profile_store == "redis":
        return RedisProfileStore(
            _redis_url(settings, "ADTARGET_PROFILE_STORE"),
            prefix=settings.redis_profile_prefix,
            timeout=settings.store_timeout_ms / 1000.0,
            cluster=settings.redis_cluster,
            published=published,
            counters=counters if isinstance(counters, RedisCounters) else None,
        )
    if snapshot_store is None:
        snapshot_store = SnapshotStore(settings.snapshots_dir, keep=settings.snapshots_keep)
    return SnapshotProfileStore(snapshot_store, published=published)


def counters_from_settings(settings: Settings) -> CounterStore:
    """``memory``, ``sqlite`` (``data_dir/counters.sqlite3``, shared by workers) or ``redis``."""
    if settings.counter_store == "redis":
        return RedisCounters(
            _redis_url(settings, "ADTARGET_COUNTER_STORE"),
            prefix=COUNTER_PREFIX,
            timeout=settings.store_timeout_ms / 1000.0,
            cluster=settings.redis_cluster,
        )
    if settings.counter_store == "memory":
        return MemoryCounters()
    return SqliteCounters(
        settings.data_dir / "counters.sqlite3", timeout_s=settings.store_timeout_ms / 1000.0
    )
