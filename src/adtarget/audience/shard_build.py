"""Build a sharded snapshot: route each row to its shard, build every shard as a normal snapshot.

Why one ``SnapshotBuilder`` per shard: a shard is an ordinary snapshot of its users (dense
ordinals, code columns, bitmaps), so everything the single-process builder does (upsert on the
shard's previous version, dictionaries seeded from the base, list and rule segments, removals)
holds per shard unchanged. This class only routes (``sharding.shards_of``) and, at ``finish``,
writes the top manifest after the last shard is complete. The Ray engine builds the same shards
with the same ``build_shard`` function, one Ray task per shard.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from adtarget.audience.build import ID_COLUMN, Mode, SegmentMatch, SnapshotBuilder, _as_id_array
from adtarget.audience.diff import SegmentDelta, SnapshotDiff
from adtarget.audience.sharded import AnySnapshot, ShardedSnapshot, write_manifest
from adtarget.audience.sharding import check_shards, shard_name, shards_of
from adtarget.audience.snapshot import Snapshot
from adtarget.errors import InvalidValue
from adtarget.rules.registry import DimensionSpec

if TYPE_CHECKING:
    from adtarget.audience.store import SnapshotStore
    from adtarget.rules.ast import Rule


class FixedDir:
    """A staging area that is one given directory (a shard's place inside a staged version)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def staging_dir(self) -> Path:
        """Create and return the shard directory."""
        self.path.mkdir(parents=True, exist_ok=False)
        return self.path


def shard_bases(base: AnySnapshot | None, n: int, mode: Mode) -> list[Snapshot | None]:
    """The base each shard builds on: shard k of a base with the same shard count; for a
    replace, an unsharded base as a whole (its list segments carry over by user id).

    Raises ``InvalidValue`` when an upsert (or a replace that would drop list segments) meets a
    snapshot of another shape: users would otherwise change shard silently.
    """
    if base is None:
        return [None] * n
    if isinstance(base, ShardedSnapshot):
        if base.num_shards == n:
            return [base.shard(k) for k in range(n)]
        lists = [s for s, i in base.segment_info().items() if i["kind"] == "list"]
        if mode == "upsert" or lists:
            raise InvalidValue(
                f"the current snapshot {base.version} has {base.num_shards} shards; an upsert "
                f"(or a replace keeping list segments {lists}) needs the same --shards "
                f"{base.num_shards}, or upload the whole population first",
                field="shards",
            )
        return [None] * n
    if mode == "upsert" and base.num_users > 0:
        raise InvalidValue(
            f"the current snapshot {base.version} is not sharded; upload the whole population "
            f"(--mode replace) with --shards {n} first",
            field="shards",
        )
    return [base] * n


class ShardedBuilder:
    """The ``SnapshotBuilder`` interface over N shards; ``finish()`` stages one version dir."""

    def __init__(
        self,
        *,
        store: SnapshotStore,
        base: AnySnapshot | None,
        registry: Mapping[str, DimensionSpec],
        shards: int,
        mode: Mode = "replace",
        now: float | None = None,
    ) -> None:
        self.n = check_shards(shards)
        self.store = store
        self.base = base
        self.mode: Mode = mode
        self.now = time.time() if now is None else now
        self._bases = shard_bases(base, self.n, mode)
        self._builders: list[SnapshotBuilder] = []
        self._staged: Path | None = None
        self._root = store.staging_dir()
        try:
            for k in range(self.n):
                self._builders.append(
                    SnapshotBuilder(
                        store=FixedDir(self._root / shard_name(k)),
                        base=self._bases[k],
                        registry=registry,
                        mode=mode,
                        now=self.now,
                    )
                )
        except BaseException:
            shutil.rmtree(self._root, ignore_errors=True)
            raise
        self.registry = self._builders[0].registry

    @property
    def rows(self) -> int:
        """Rows added so far (all shards)."""
        return sum(b.rows for b in self._builders)

    def add_batch(self, batch: pa.RecordBatch) -> None:
        """Route one validated batch's rows to their shards."""
        if ID_COLUMN not in batch.schema.names:
            raise InvalidValue("batch has no user_id column", field=ID_COLUMN)
        for k, part in split_by_shard(batch, self.n):
            self._builders[k].add_batch(part)

    def remove_users(self, user_ids: Iterable[str] | pa.Array) -> None:
        """Users to drop, each from its own shard."""
        ids = _as_id_array(user_ids)
        where = shards_of(ids, self.n)
        for k in np.unique(where):
            self._builders[int(k)].remove_users(ids.filter(pa.array(where == k)))

    def set_segment(
        self,
        name: str,
        user_ids: Iterable[str] | pa.Array | pa.ChunkedArray,
        *,
        ttl_seconds: int | None = None,
        now: float | None = None,
        append: bool = False,
    ) -> SegmentMatch:
        """A list segment, each member set in its own shard; statistics summed over shards."""
        ids = _as_id_array(user_ids)
        where = shards_of(ids, self.n)
        parts = [
            builder.set_segment(
                name,
                ids.filter(pa.array(where == k)),
                ttl_seconds=ttl_seconds,
                now=now,
                append=append,
            )
            for k, builder in enumerate(self._builders)
        ]
        stats = parts[0].copy()
        for part in parts[1:]:
            stats["ids_received"] += part["ids_received"]
            stats["ids_unique"] += part["ids_unique"]
            stats["matched"] += part["matched"]
            stats["unmatched"] += part["unmatched"]
        unique = stats["ids_unique"]
        stats["match_rate"] = stats["matched"] / unique if unique else 0.0
        return stats

    def add_rule_segment(self, name: str, rule: Rule | str) -> None:
        """A rule segment, materialized in every shard."""
        for builder in self._builders:
            builder.add_rule_segment(name, rule)

    def finish(self) -> Path:
        """Finish every shard, then write the manifest naming them (nothing is published)."""
        if self._staged is not None:
            return self._staged
        try:
            dirs = [b.finish() for b in self._builders]
            write_manifest(
                self._root,
                shard_dirs=dirs,
                mode=self.mode,
                base_version=self.base.version if self.base is not None else None,
                now=self.now,
            )
        except BaseException:
            self.discard()
            raise
        self._staged = self._root
        return self._root

    def diff(self) -> SnapshotDiff:
        """Per-shard diffs added up (only against a base of the same shard count, or none)."""
        if self.base is not None and not (
            isinstance(self.base, ShardedSnapshot) and self.base.num_shards == self.n
        ):
            raise InvalidValue(
                "a dry run that changes the shard count cannot be compared user by user",
                field="shards",
            )
        self.finish()
        return add_diffs([b.diff() for b in self._builders])

    def discard(self) -> None:
        """Delete everything staged."""
        shutil.rmtree(self._root, ignore_errors=True)
        self._staged = None


def split_by_shard(batch: pa.RecordBatch, n: int) -> list[tuple[int, pa.RecordBatch]]:
    """The rows of ``batch`` per shard, each part in the batch's row order."""
    if batch.num_rows == 0:
        return []
    where = shards_of(batch.column(ID_COLUMN), n)
    order = np.argsort(where, kind="stable")
    bounds = np.searchsorted(where[order], np.arange(n + 1))
    taken = batch.take(pa.array(order))
    out: list[tuple[int, pa.RecordBatch]] = []
    for k in range(n):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        if hi > lo:
            out.append((k, taken.slice(lo, hi - lo)))
    return out


def add_diffs(diffs: list[SnapshotDiff]) -> SnapshotDiff:
    """Sum of per-shard ``diff_snapshots`` answers."""
    out = SnapshotDiff(
        segments={},
        users_before=0,
        users_after=0,
        users_added=0,
        users_changed=0,
        users_removed=0,
    )
    for d in diffs:
        out["users_before"] += d["users_before"]
        out["users_after"] += d["users_after"]
        out["users_added"] += d["users_added"]
        out["users_changed"] += d["users_changed"]
        out["users_removed"] += d["users_removed"]
        for name, seg in d["segments"].items():
            acc = out["segments"].setdefault(name, SegmentDelta(before=0, after=0, delta=0))
            acc["before"] += seg["before"]
            acc["after"] += seg["after"]
            acc["delta"] += seg["delta"]
    return out
