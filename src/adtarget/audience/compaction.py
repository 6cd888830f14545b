"""Fold the live deltas into a new snapshot version, in the background, crash-safe.

Why an upsert build: it already writes every file of a version (ids, codes, bitmaps, segments)
from a base plus changed rows, in a staged directory that only an atomic publish makes visible,
so a compaction killed at any point leaves the old version serving and its staging dir to
``clean_stale``. The new version records ``updates_through`` (the last update folded in) and
``compacted_from``; every follower then replays only the log after that number. Readers and
writers never wait: the build reads a frozen copy of the delta while updates keep arriving, and
a publish that would replace an upload published meanwhile is refused (``expect``). A sharded
version is compacted shard by shard: shards with pending updates are rebuilt, the others
hard-linked, and one new top manifest names them (``build_sharded``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from adtarget.audience.build import SnapshotBuilder
from adtarget.audience.delta import Delta, UserState, value_kind
from adtarget.audience.live import LiveFollower
from adtarget.audience.shard_build import FixedDir
from adtarget.audience.sharded import ShardedSnapshot, write_manifest
from adtarget.audience.sharded_live import ShardedDelta
from adtarget.audience.sharding import shard_name
from adtarget.audience.snapshot import MANIFEST, Snapshot
from adtarget.audience.store import COMPACTED_FROM, UPDATES_THROUGH, SnapshotStore
from adtarget.errors import Conflict
from adtarget.rules.ast import SEGMENTS_FIELD
from adtarget.rules.registry import DimensionSpec

log = logging.getLogger("adtarget.audience")
LOCK = ".compact.lock"
BATCH_ROWS = 100_000
ARROW: dict[str, pa.DataType] = {
    "category": pa.string(),
    "number": pa.float64(),
    "bool": pa.bool_(),
    "set": pa.list_(pa.string()),
}


def stamp_manifest(staged: Path, **fields: Any) -> None:
    """Add fields to a staged build's manifest (before ``publish``)."""
    path = staged / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    tmp = staged / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False))
    os.replace(tmp, path)


@contextlib.contextmanager
def _exclusive(root: Path, wait: bool) -> Iterator[bool]:
    """One compaction per data dir at a time, across processes (``False``: someone else)."""
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def compact(
    store: SnapshotStore, follower: LiveFollower, *, wait: bool = False
) -> dict[str, Any] | None:
    """Publish base + deltas as a new version; ``None`` when nothing is pending or another
    compaction runs (``wait``: run after it instead). Raises ``Conflict`` when an upload was
    published while it built. A sharded base is compacted shard by shard (``build_sharded``)."""
    with _exclusive(store.root, wait) as mine:
        if not mine:
            return None
        base = store.current_base()
        if base is None:
            return None
        follower.live(base)
        seq, parts = follower.frozen_parts()
        if not any(users for users, _ in parts):
            return None
        delta = follower.delta
        assert delta is not None
        discard: Callable[[], None]
        if isinstance(base, ShardedSnapshot):
            assert isinstance(delta, ShardedDelta)
            staged = build_sharded(store, base, delta, parts)

            def discard() -> None:
                shutil.rmtree(staged, ignore_errors=True)

        else:
            assert isinstance(delta, Delta)
            builder = SnapshotBuilder(
                store=store, base=base, registry=live_registry(base, [delta]), mode="upsert"
            )
            fold_into(builder, base, delta, *parts[0])
            staged = builder.finish()
            discard = builder.discard
        try:
            stamp_manifest(staged, **{UPDATES_THROUGH: seq, COMPACTED_FROM: base.version})
            version = store.publish(staged, expect=base.version)
        except BaseException:
            discard()
            raise
        users = sum(len(u) for u, _ in parts)
        log.info("compacted %d updated users into %s (through %d)", users, version, seq)
        pruned = prune_log(store, follower)
        return {
            "version": version,
            "compacted_from": base.version,
            "through": seq,
            "users": users,
            "pruned": pruned,
        }


def live_registry(base: Any, deltas: list[Delta]) -> dict[str, DimensionSpec]:
    """The base's registry plus every dimension the updates introduced (catalog dimensions
    the base had not seen yet)."""
    registry: dict[str, DimensionSpec] = dict(base.registry)
    for delta in deltas:
        for dim, kind in delta.view().kinds.items():
            registry.setdefault(dim, DimensionSpec(dim, kind))  # type: ignore[arg-type]
    return registry


def fold_into(
    builder: SnapshotBuilder,
    base: Snapshot,
    delta: Delta,
    users: dict[int, UserState],
    new_list: list[str],
) -> None:
    """Hand ``builder`` (an upsert over ``base``) every updated user's full row, and remove
    the deleted ones: the frozen ``users`` of ``delta`` folded into a new version."""
    registry = builder.registry
    rows: list[tuple[str, dict[str, Any]]] = []
    removed: list[str] = []
    for ordinal, state in users.items():
        user_id = new_list[ordinal - delta.n0] if ordinal >= delta.n0 else base.user_id_of(ordinal)
        if not state.alive:
            if ordinal < delta.n0:
                removed.append(user_id)
            continue
        if state.fresh and ordinal < delta.n0:
            builder.leave_segments.append(user_id)
        feats = {} if state.fresh else base.features(ordinal)
        feats.pop(SEGMENTS_FIELD, None)
        for dim, value in state.over.items():
            if value is None:
                feats.pop(dim, None)
            else:
                feats[dim] = value
        rows.append((user_id, feats))
        if len(rows) >= BATCH_ROWS:
            builder.add_batch(_batch(rows, registry))
            rows = []
    if rows:
        builder.add_batch(_batch(rows, registry))
    if removed:
        builder.remove_users(removed)


def build_sharded(
    store: SnapshotStore,
    base: ShardedSnapshot,
    delta: ShardedDelta,
    parts: list[tuple[dict[int, UserState], list[str]]],
) -> Path:
    """Stage a sharded version: each shard with pending updates rebuilt (an upsert over that
    shard, one shard at a time so memory stays one shard's), every other shard hard-linked
    from the base (its files are immutable), then the top manifest, written last.

    Nothing is visible until ``publish`` renames the staged directory; a crash leaves a
    ``.tmp-<pid>-`` directory that ``clean_stale`` removes.
    """
    registry = live_registry(base, delta.parts)
    new_dims = set(registry) != set(base.registry)  # every shard must list every dimension
    staged = store.staging_dir()
    try:
        dirs: list[Path] = []
        for k, (users, new_list) in enumerate(parts):
            shard = base.shard(k)
            target = staged / shard_name(k)
            if users or new_dims:
                builder = SnapshotBuilder(
                    store=FixedDir(target), base=shard, registry=registry, mode="upsert"
                )
                fold_into(builder, shard, delta.parts[k], users, new_list)
                dirs.append(builder.finish())
            else:
                shutil.copytree(base.shard_path(k), target, copy_function=_link_or_copy)
                dirs.append(target)
        write_manifest(
            staged, shard_dirs=dirs, mode="upsert", base_version=base.version, now=time.time()
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (no bytes copied) where the file system allows it, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _batch(
    rows: list[tuple[str, dict[str, Any]]], registry: dict[str, DimensionSpec]
) -> pa.RecordBatch:
    """Full rows (every dimension, null = missing) so the upsert replaces each user's row."""
    cols: dict[str, pa.Array] = {"user_id": pa.array([r[0] for r in rows], pa.string())}
    for dim, spec in registry.items():
        kind = spec.type
        values: list[Any] = [f.get(dim) for _, f in rows]
        if kind == "set":
            values = [sorted(v) if v is not None else None for v in values]
        elif kind == "number":
            values = [float(v) if v is not None else None for v in values]
        elif any(v is not None and value_kind(v) != kind for v in values):
            values = [v if v is None or value_kind(v) == kind else None for v in values]
        cols[dim] = pa.array(values, ARROW[kind])
    return pa.RecordBatch.from_pydict(cols)


def prune_log(store: SnapshotStore, follower: LiveFollower) -> int:
    """Drop log rows every kept version already holds and older than the dedup window
    (``follower.dedup_seconds``): an undo to any kept version can still replay what it needs."""
    throughs = []
    for version in store.versions():
        try:
            manifest = json.loads((store.root / version / MANIFEST).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        throughs.append(int(manifest.get(UPDATES_THROUGH) or 0))
    if not throughs:
        return 0
    return follower.log.prune(through=min(throughs), older_than_s=follower.dedup_seconds)


def compact_quietly(store: SnapshotStore, follower: LiveFollower) -> None:
    """Background entry point: a conflict (an upload won the race) or failure is logged."""
    try:
        compact(store, follower)
    except Conflict as exc:
        log.info("compaction skipped: %s", exc.message)
    except Exception:
        log.exception("compaction failed; the deltas keep serving")


__all__ = ["compact", "compact_quietly", "fold_into", "live_registry", "stamp_manifest"]
