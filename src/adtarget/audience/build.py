"""Build a snapshot directory from Arrow batches (and a base snapshot), vectorized end to end.

Why collect codes and build every bitmap at ``finish``: per batch we only dictionary-encode
columns into numpy arrays (cheap, bounded memory); at the end one stable sort per dimension
groups ordinals by value and each Roaring bitmap is built from a uint32 array in one C call.
Upserts copy the base's code columns (dictionaries are seeded from the base, so codes agree),
overwrite the changed users and append new ones: ordinals of existing users never move.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from adtarget.audience.columns import (
    ColumnChunks,
    Dictionary,
    encode_bool,
    encode_number,
    encode_set,
    encode_strings,
    narrow,
)
from adtarget.audience.diff import SnapshotDiff, diff_snapshots
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.writer import (
    PendingSegment,
    ResolvedIds,
    SnapshotWriter,
    resolve_ids,
)
from adtarget.errors import InvalidValue
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec

if TYPE_CHECKING:
    from adtarget.rules.ast import Rule

Mode = Literal["replace", "upsert"]
ID_COLUMN = "user_id"


class SegmentMatch(TypedDict):
    """How a list segment's ids matched the users of the build (``set_segment``)."""

    segment: str
    ids_received: int
    ids_unique: int
    matched: int
    unmatched: int
    match_rate: float
    expires_at: int | None


class StagingArea(Protocol):
    """Where a build writes: a ``SnapshotStore``, or one shard's place in a sharded build."""

    def staging_dir(self) -> Path:
        """A fresh directory for the build."""
        ...


def _as_id_array(user_ids: Iterable[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(user_ids, pa.ChunkedArray):
        user_ids = user_ids.combine_chunks()
    arr = user_ids if isinstance(user_ids, pa.Array) else pa.array(list(user_ids), pa.string())
    return pc.cast(arr, pa.large_string())


class SnapshotBuilder:
    """Accumulates batches, segments and removals; ``finish()`` writes a staged directory.

    Args:
        store: where the staged directory is created (publish with ``store.publish``).
        base: the snapshot this build starts from (upsert base; dictionary, segment and
            rule-segment source for replace; the reference for ``diff``).
        registry: dimensions of this build; batch columns must be in it.
        mode: ``replace`` (batches are the whole population) or ``upsert``.
        number_layout: force ``range``/``buckets``/``bsi`` for every number dimension (tests,
            benchmarks); by default each dimension's is chosen from its distinct values.
    """

    def __init__(
        self,
        *,
        store: StagingArea,
        base: Snapshot | None,
        registry: Mapping[str, DimensionSpec],
        mode: Mode = "replace",
        now: float | None = None,
        number_layout: str | None = None,
    ) -> None:
        if mode not in ("replace", "upsert"):
            raise InvalidValue(f"mode {mode!r} is not replace or upsert", field="mode")
        self.store = store
        self.base = base
        self.mode: Mode = mode
        self.now = time.time() if now is None else now
        self.number_layout = number_layout  # None: per dimension (audience/numbers.py)
        merged: dict[str, DimensionSpec] = {}
        if base is not None and mode == "upsert":
            merged.update(base.registry)
        for name, spec in registry.items():
            old = merged.get(name)
            if old is not None and old.type != spec.type:
                raise InvalidValue(
                    f"dimension {name!r} changed type from {old.type} to {spec.type}; "
                    "upload the whole population (replace) to change it",
                    field=name,
                )
            merged[name] = spec
        self.registry = merged
        self._dicts: dict[str, Dictionary] = {}
        self._chunks: dict[str, ColumnChunks] = {}
        for name, spec in merged.items():
            seed: list[Any] | None = None
            if spec.type == "bool":
                seed = [False, True]
            elif base is not None and name in base.dims and base.dims[name].type == spec.type:
                seed = list(base.dims[name].values) if spec.type != "number" else None
            if spec.type != "number":
                self._dicts[name] = Dictionary(seed)
            self._chunks[name] = ColumnChunks(spec.type)
        self._ids: list[pa.Array] = []
        self._hashes: list[npt.NDArray[np.uint64]] | None = []
        self._rows = 0
        self._removed: list[pa.Array] = []
        self._segments: dict[str, PendingSegment] = {}
        self._rule_segments: dict[str, Rule] = {}
        self._staged: Path | None = None
        self.leave_segments: list[str] = []
        """Upsert: user ids whose base list-segment memberships end (re-created users)."""

    @property
    def rows(self) -> int:
        """Rows added so far."""
        return self._rows

    def add_batch(
        self, batch: pa.RecordBatch, hashes: npt.NDArray[np.uint64] | None = None
    ) -> None:
        """Encode one validated batch: ``user_id`` plus one column per registered dimension.

        ``hashes``: ``idhash.hash_ids`` of the batch's ids when the caller has them (the upload
        validator does), so the ids are hashed once per upload.
        """
        self._check_open()
        names = batch.schema.names
        if ID_COLUMN not in names:
            raise InvalidValue("batch has no user_id column", field=ID_COLUMN)
        for col in names:
            if col != ID_COLUMN and col not in self.registry:
                raise InvalidValue(f"column {col!r} is not a registered dimension", field=col)
        ids = batch.column(ID_COLUMN)
        if ids.null_count:
            raise InvalidValue("user_id is null in a batch row", field=ID_COLUMN)
        self._ids.append(pc.cast(ids, pa.large_string()))
        n = batch.num_rows
        if self._hashes is not None and hashes is not None and len(hashes) == n:
            self._hashes.append(hashes)
        else:
            self._hashes = None
        for name, chunks in self._chunks.items():
            if name not in names:
                chunks.add_absent(n)
                continue
            arr = batch.column(name)
            chunks.add_provided(n)
            if chunks.type == "category":
                chunks.codes.append(narrow(encode_strings(arr, self._dicts[name], name)))
            elif chunks.type == "bool":
                chunks.codes.append(narrow(encode_bool(arr, name)))
            elif chunks.type == "number":
                vals, valid = encode_number(arr, name)
                chunks.is_float |= vals.dtype.kind == "f"
                chunks.codes.append(narrow(vals))
                chunks.valid.append(valid)
            else:
                lengths, codes = encode_set(arr, self._dicts[name], name)
                chunks.lengths.append(narrow(lengths))
                chunks.codes.append(narrow(codes))
        self._rows += n

    def remove_users(self, user_ids: Iterable[str] | pa.Array) -> None:
        """Users to drop from the universe (their ordinals stay reserved)."""
        self._check_open()
        self._removed.append(_as_id_array(user_ids))

    def set_segment(
        self,
        name: str,
        user_ids: Iterable[str] | pa.Array | pa.ChunkedArray,
        *,
        ttl_seconds: int | None = None,
        now: float | None = None,
        append: bool = False,
    ) -> SegmentMatch:
        """Make ``name`` a list segment of these users (replacing it unless ``append``).

        Returns match statistics against the users this build will hold (base users for an
        upsert, plus the rows added so far): ids received, unique, matched, match_rate.
        """
        self._check_open()
        if not name or not isinstance(name, str):
            raise InvalidValue("segment name must be a non-empty string", field="segment")
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise InvalidValue("ttl_seconds must be positive", field="ttl_seconds")
        ids = _as_id_array(user_ids)
        received = len(ids)
        ids = pc.unique(ids.filter(pc.is_valid(ids)))
        t = self.now if now is None else now
        expires_at = None if ttl_seconds is None else math.ceil(t + ttl_seconds)
        candidates: list[pa.Array] = list(self._ids)
        if self.base is not None and self.mode == "upsert":
            candidates.append(self.base.ids_array())
        if candidates:
            pool = pa.chunked_array(candidates, pa.large_string()).combine_chunks()
            matched = int(pc.sum(pc.is_in(ids, value_set=pool)).as_py() or 0)
        else:
            matched = 0
        pending = self._segments.get(name) if append else None
        groups = (pending.groups if pending else []) + [(expires_at, ids)]
        self._segments[name] = PendingSegment(groups=groups, append=append)
        unique = len(ids)
        return {
            "segment": name,
            "ids_received": received,
            "ids_unique": unique,
            "matched": matched,
            "unmatched": unique - matched,
            "match_rate": (matched / unique) if unique else 0.0,
            "expires_at": expires_at,
        }

    def add_rule_segment(self, name: str, rule: Rule | str) -> None:
        """A rule-based segment, materialized as a bitmap when the build finishes."""
        self._check_open()
        if isinstance(rule, str):
            rule = parse(rule)
        self._rule_segments[name] = rule

    def finish(self) -> Path:
        """Write the staged snapshot directory (not yet published) and return its path."""
        if self._staged is not None:
            return self._staged
        resolved: ResolvedIds = resolve_ids(
            new_ids=self._ids,
            removed=self._removed,
            base=self.base,
            mode=self.mode,
            new_hashes=self._hashes,
        )
        if resolved.n_base == 0 and len(resolved.all_ids) == self._rows:
            # the batches, combined: keep that one copy (not both) while the files are written
            self._ids = [resolved.all_ids]
            self._hashes = None if resolved.hashes is None else [resolved.hashes]
        staged = self.store.staging_dir()
        try:
            writer = SnapshotWriter(
                staged=staged,
                registry=self.registry,
                resolved=resolved,
                base=self.base,
                mode=self.mode,
                now=self.now,
                link_base=self._segments_only(),
                number_layout=self.number_layout,
            )
            if self.leave_segments:
                leave = pc.index_in(_as_id_array(self.leave_segments), value_set=resolved.all_ids)
                writer.leave = leave.drop_null().to_numpy(zero_copy_only=False).astype(np.uint32)
            if not self._segments_only():
                writer.write_dimensions(self._chunks, self._dicts)
            writer.write_segments(self._segments, self._rule_segments)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        self._staged = writer.staged
        return writer.staged

    def diff(self) -> SnapshotDiff:
        """What publishing this build would change against ``base`` (for dry runs)."""

        staged = self.finish()
        return diff_snapshots(self.base, Snapshot(staged), mode=self.mode)

    def discard(self) -> None:
        """Delete the staged directory (after a dry run, or instead of publishing)."""
        if self._staged is not None:
            shutil.rmtree(self._staged, ignore_errors=True)
            self._staged = None

    def _segments_only(self) -> bool:
        """An upsert that adds no rows, removes nobody and keeps the base's dimensions."""
        base = self.base
        return (
            base is not None
            and self.mode == "upsert"
            and self._rows == 0
            and not self._removed
            and set(self.registry) == set(base.dims)
            and all(base.dims[n].type == s.type for n, s in self.registry.items())
        )

    def _check_open(self) -> None:
        if self._staged is not None:
            raise InvalidValue("builder already finished", field="builder")
