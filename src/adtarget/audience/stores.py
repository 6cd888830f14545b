"""The snapshot store a process should use, per settings: with Redis profiles, followed in Redis.

Why here and not at each call site: every path that makes a snapshot current (an upload's
publish, its undo and redo, ``snapshots rollback`` from the CLI or the API, crash recovery) goes
through ``SnapshotStore.publish``/``rollback``; one factory that attaches the Redis follower to
the store means none of those paths can forget it. Without Redis profiles nothing is attached.
With ``ADTARGET_AUDIENCE_BACKEND=ray`` a sharded snapshot answers through Ray shard actors.
Every such store also serves the live audience (``audience.live``): the base snapshot plus the
profile updates logged since.
"""

from __future__ import annotations

from collections.abc import Callable

from adtarget.audience.compaction import compact_quietly
from adtarget.audience.fanout import Fanout
from adtarget.audience.live import LiveFollower, follower_for
from adtarget.audience.ray_fanout import RayFanout
from adtarget.audience.redis_profiles import open_client, push_current_profiles, write_live_users
from adtarget.audience.sharded import AnySnapshot, ShardedSnapshot
from adtarget.audience.store import SnapshotStore
from adtarget.settings import Settings


def snapshot_store_for(settings: Settings) -> SnapshotStore:
    """The data dir's snapshots; with ``ADTARGET_PROFILE_STORE=redis``, each switch pushed."""
    store = SnapshotStore(settings.snapshots_dir, keep=settings.snapshots_keep)
    attach_live(store, settings)
    redis_url = settings.redis_url
    if settings.profile_store == "redis" and redis_url:
        prefix = settings.redis_profile_prefix
        cluster = settings.redis_cluster

        def follow(_version: str) -> None:
            push_current_profiles(store, redis_url, prefix=prefix, cluster=cluster)

        store.on_switch = follow
    if settings.audience_backend == "ray":
        address, deadline_s = settings.ray_address, settings.shard_deadline_ms / 1000
        updates_url, poll_s = settings.resolved_updates_url, settings.updates_poll_ms / 1000
        hosts = settings.ray_shard_hosts

        def ray_fanout(snapshot: ShardedSnapshot) -> Fanout:
            # the shard hosts follow the update log themselves (real-time updates counted)
            return RayFanout(
                snapshot,
                address=address,
                deadline_s=deadline_s,
                updates_url=updates_url,
                poll_s=poll_s,
                hosts=hosts,
            )

        store.fanout_factory = ray_fanout
    return store


def live_follower(settings: Settings, *, url: str | None = None) -> LiveFollower:
    """This process's follower of the update log for the settings' data dir; it compacts
    (in a background thread) once ``compact_after_updates`` updates are pending. ``url``: the
    settings' ``resolved_updates_url`` when the caller has it (resolving it is a filesystem
    call)."""
    follower = follower_for(
        settings.snapshots_dir,
        url or settings.resolved_updates_url,
        poll_s=settings.updates_poll_ms / 1000,
    )
    if follower.compactor is None:
        store = snapshot_store_for(settings)  # publishes followed in Redis like any other
        follower.compact_after = settings.compact_after_updates
        follower.dedup_seconds = settings.updates_dedup_seconds
        follower.compactor = lambda: compact_quietly(store, follower)
    return follower


def attach_live(store: SnapshotStore, settings: Settings) -> None:
    """Serve ``store.current()`` as the live audience: the base plus real-time updates."""

    url = settings.resolved_updates_url  # once: every ``store.current()`` comes through here

    def overlay(base: AnySnapshot) -> AnySnapshot:
        return live_follower(settings, url=url).live(base)

    store.overlay = overlay


def profile_writer(settings: Settings) -> Callable[[list[str]], None] | None:
    """With Redis profiles: a function writing updated users into Redis (``None`` without)."""
    redis_url = settings.redis_url
    if settings.profile_store != "redis" or not redis_url:
        return None
    client = open_client(redis_url, cluster=settings.redis_cluster)
    prefix = settings.redis_profile_prefix
    follower = live_follower(settings)

    def write(user_ids: list[str]) -> None:
        delta = follower.delta
        if delta is not None and user_ids:
            write_live_users(client, delta, user_ids, prefix=prefix)

    return write
