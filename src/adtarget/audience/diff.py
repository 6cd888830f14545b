"""What publishing a staged snapshot would change: users added/changed/removed, segment deltas.

Why codes can be compared directly: the builder seeds each dimension's dictionary from the base
snapshot, so the same value has the same code in both. Sets are compared by length plus an
order-independent sum of mixed codes per user, all vectorized.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
import pyarrow.compute as pc

from adtarget.audience.index import DimReader
from adtarget.audience.snapshot import Snapshot

U64 = np.uint64


class SegmentDelta(TypedDict):
    """One segment's size before and after a build."""

    before: int
    after: int
    delta: int


class SnapshotDiff(TypedDict):
    """What publishing a build would change (a dry run's ``diff``)."""

    users_before: int
    users_after: int
    users_added: int
    users_changed: int
    users_removed: int
    segments: dict[str, SegmentDelta]


def _alive(s: Snapshot) -> npt.NDArray[np.bool_]:
    mask = np.zeros(s.num_ordinals, dtype=bool)
    mask[np.frombuffer(s.index.universe().to_array(), dtype=np.uint32)] = True
    return mask


def _mix(x: npt.NDArray[Any]) -> npt.NDArray[np.uint64]:
    """splitmix64 finalizer: spreads small codes over 64 bits."""
    z = x.astype(U64) + U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


def _column_key(reader: DimReader | None, ords: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """A comparable per-user key for one dimension (missing has its own key)."""
    if reader is None:
        return np.zeros(len(ords), dtype=U64)
    if reader.type == "set":
        assert reader.offsets is not None
        off = np.asarray(reader.offsets)
        lengths = (off[1:] - off[:-1])[ords]
        cum = np.zeros(len(np.asarray(reader.codes)) + 1, dtype=U64)
        np.cumsum(_mix(np.asarray(reader.codes).astype(np.int64) + 1), out=cum[1:])
        sums = cum[off[1:][ords]] - cum[off[:-1][ords]]  # wraps mod 2**64: still a fingerprint
        return np.where(lengths == 0, U64(0), sums ^ _mix(lengths))
    codes = np.asarray(reader.codes)[ords]
    if reader.type == "number":
        assert reader.distinct is not None
        vals = np.where(codes >= 0, reader.distinct[np.maximum(codes, 0)], 0).astype(np.float64)
        return np.where(codes >= 0, vals.view(U64) ^ U64(1), U64(0))
    return (codes.astype(np.int64) + 1).astype(U64)


def diff_snapshots(base: Snapshot | None, new: Snapshot, *, mode: str) -> SnapshotDiff:
    """Counts of users added, changed and removed, and per-segment size deltas."""
    new_alive = _alive(new)
    segments: dict[str, SegmentDelta] = {}
    base_names = set(base.segment_names()) if base is not None else set()
    for name in sorted(base_names | set(new.segment_names())):
        before = len(base.index.segment(name)) if base is not None else 0
        after = len(new.index.segment(name))
        segments[name] = {"before": before, "after": after, "delta": after - before}
    if base is None:
        added = int(new_alive.sum())
        return {
            "users_before": 0,
            "users_after": new.num_users,
            "users_added": added,
            "users_changed": 0,
            "users_removed": 0,
            "segments": segments,
        }
    base_alive = _alive(base)
    if mode == "upsert":
        to_base = np.arange(new.num_ordinals, dtype=np.int64)
        to_base[to_base >= base.num_ordinals] = -1
    else:
        to_base = (
            pc.index_in(new.ids_array(), value_set=base.ids_array())
            .fill_null(-1)
            .to_numpy(zero_copy_only=False)
            .astype(np.int64)
        )
    matched = to_base >= 0
    matched[matched] &= base_alive[to_base[matched]]
    both = matched & new_alive
    added = int((new_alive & ~matched).sum())
    kept_in_new = np.zeros(base.num_ordinals, dtype=bool)
    kept_in_new[to_base[both]] = True
    removed = int((base_alive & ~kept_in_new).sum())
    new_ords = np.flatnonzero(both)
    base_ords = to_base[new_ords]
    changed = np.zeros(len(new_ords), dtype=bool)
    for name in set(base.dims) | set(new.dims):
        b_reader, n_reader = base.dims.get(name), new.dims.get(name)
        if b_reader is not None and n_reader is not None and b_reader.type != n_reader.type:
            b_reader = None
        changed |= _column_key(b_reader, base_ords) != _column_key(n_reader, new_ords)
    return {
        "users_before": base.num_users,
        "users_after": new.num_users,
        "users_added": added,
        "users_changed": int(changed.sum()),
        "users_removed": removed,
        "segments": segments,
    }
