"""The read side of one snapshot's bitmaps: a ``BitmapIndex`` for the rule evaluator.

Why lazy and frozen: a snapshot may hold thousands of (dimension, value) bitmaps, and a query
touches a handful; each is deserialized from the memory-mapped blob on first use and cached.
Bitmaps are handed out as ``FrozenBitMap`` so no caller can mutate a cached one in place.

Why the cache is bounded: deserialized bitmaps live on the heap (the blob stays mapped), and a
long-running server that is asked about every value of every dimension would otherwise end up
holding a second copy of the whole index. One least-recently-used cache per snapshot, bounded
by the bitmaps' serialized bytes (``BITMAP_CACHE_BYTES``), is shared by its dimensions.
"""

from __future__ import annotations

import ctypes
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache
from pyroaring import AbstractBitMap, BitMap, FrozenBitMap

from adtarget.audience import bsi, numbers
from adtarget.audience.dense import DenseCache
from adtarget.audience.dense_rules import DenseIndex
from adtarget.audience.layout import (
    SEGMENTS,
    UNIVERSE,
    dim_file,
    int_view,
    load_bytes,
    load_npy,
    read_bitmap,
)
from adtarget.errors import InvalidValue

EMPTY = FrozenBitMap()
BITMAP_CACHE_BYTES = 1 << 30
UNION_CACHE_ENTRIES = 1024
"""Unions of a segment's live expiry groups kept per snapshot. A key is (segment, groups still
alive); as groups expire a segment moves to a new key and the old one is never asked for again,
so without a bound a long-running server kept every union it ever made."""


class BitmapCache:
    """Deserialized bitmaps of one snapshot, LRU-bounded by their serialized size in bytes."""

    def __init__(self, max_bytes: int = BITMAP_CACHE_BYTES) -> None:
        self._lru: LRUCache[tuple[str, int], tuple[FrozenBitMap, int]] = LRUCache(
            maxsize=max(1, max_bytes), getsizeof=lambda item: max(1, item[1])
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> FrozenBitMap | None:
        with self._lock:
            hit = self._lru.get(key)
        return None if hit is None else hit[0]

    def put(self, key: tuple[str, int], bm: FrozenBitMap, size: int) -> None:
        if size > self._lru.maxsize:
            return  # larger than the whole cache: served, not kept
        with self._lock:
            self._lru[key] = (bm, size)

    @property
    def bytes(self) -> float:
        """Serialized bytes of the bitmaps held now."""
        return self._lru.currsize

    def __len__(self) -> int:
        return len(self._lru)


M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
_heap_tuned = False


def keep_freed_heap(trim_threshold: int = 64 << 20, top_pad: int = 16 << 20) -> None:
    """Ask glibc to keep up to ``trim_threshold`` bytes of freed heap instead of returning it.

    Why: sizing on 10M users allocates and frees a few MB of 8 KB bitset containers per query;
    with the default (dynamic, ~128 KB) trim threshold glibc hands that memory back to the
    kernel after every query and the next query pays a page fault per 4 KB, which measured
    2-3x slower sizing (bench/bench_sizing.py). Process-wide, once; a no-op off glibc.
    """
    global _heap_tuned
    if _heap_tuned:
        return
    _heap_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)
        libc.mallopt(M_TOP_PAD, top_pad)
    except (OSError, AttributeError):
        pass


class DimReader:
    """One dimension's files: codes (per user), dictionary, and its bitmaps blob."""

    def __init__(
        self, root: Path, name: str, meta: dict[str, Any], cache: BitmapCache | None = None
    ) -> None:
        self.name = name
        self.type: str = meta["type"]
        self.slot: str = meta["slot"]
        self.num_values: int = meta["num_values"]
        self.bits: int = meta.get("bits", 0)
        self._root = root
        self.codes = load_npy(root / dim_file(self.slot, "codes.npy"))
        self.offsets: npt.NDArray[np.int64] | None = None
        if self.type == "set":
            self.offsets = load_npy(root / dim_file(self.slot, "offsets.npy"))
        self._codes_view = int_view(self.codes)
        self._off_view = int_view(self.offsets) if self.offsets is not None else None
        self.distinct: npt.NDArray[Any] | None = None
        self._distinct_list: list[Any] | None = None
        if self.type == "number":
            self.distinct = np.asarray(load_npy(root / dim_file(self.slot, "values.npy")))
            self._distinct_list = self.distinct.tolist()
        self._blob = load_bytes(root / dim_file(self.slot, "bm.bin"))
        self._bm_off = np.asarray(load_npy(root / dim_file(self.slot, "bm.off.npy")))
        self._values: list[Any] | None = None
        self._lookup: dict[Any, int] | None = None
        self._cache = cache if cache is not None else BitmapCache()
        self.layout: str | None = meta.get("layout", "bsi") if self.type == "number" else None
        self.numbers: numbers.NumberIndex | None = None
        if self.type == "number":
            sizes = (np.diff(self._bm_off) // 2).tolist()  # ~users of an array-stored bitmap
            self.numbers = numbers.reader(self.bitmap, meta, len(self._bm_off) - 1, sizes)

    @property
    def values(self) -> list[Any]:
        """Code -> value (category/set/bool) or rank -> value (number)."""
        if self._values is None:
            if self.type == "number":
                assert self._distinct_list is not None
                self._values = self._distinct_list
            else:
                path = self._root / dim_file(self.slot, "dict.json")
                self._values = json.loads(path.read_text())
        return self._values

    def code_of(self, value: Any) -> int | None:
        """The dictionary code of a value, or ``None`` when no user has it."""
        if self._lookup is None:
            self._lookup = {v: i for i, v in enumerate(self.values)}
        if self.type == "bool":
            if not isinstance(value, bool):
                return None
        elif isinstance(value, bool) or not isinstance(value, str):
            return None
        return self._lookup.get(value)

    def bitmap(self, i: int) -> FrozenBitMap:
        """The i-th bitmap of the blob (value code, BSI slice; the last one is ``present``)."""
        key = (self.slot, i)
        bm = self._cache.get(key)
        if bm is None:
            start, end = int(self._bm_off[i]), int(self._bm_off[i + 1])
            bm = read_bitmap(self._blob, start, end)
            self._cache.put(key, bm, end - start)
        return bm

    def raw(self, i: int) -> npt.NDArray[np.uint8]:
        """The i-th bitmap as stored (Roaring's portable serialization, in the mapping)."""
        return self._blob[int(self._bm_off[i]) : int(self._bm_off[i + 1])]

    @property
    def present_index(self) -> int:
        """Which stored bitmap is ``present`` (the last)."""
        return len(self._bm_off) - 2

    def present(self) -> FrozenBitMap:
        """Users with a value (for sets: a non-empty set)."""
        return self.bitmap(self.present_index)

    def value_at(self, ordinal: int) -> Any:
        """This user's value, or ``None`` when missing."""
        if self._off_view is not None:  # a set dimension
            a, b = self._off_view[ordinal], self._off_view[ordinal + 1]
            if a == b:
                return None
            values = self.values
            return frozenset(values[c] for c in self._codes_view[a:b].tolist())
        code = self._codes_view[ordinal]
        if code < 0:
            return None
        return self.values[code]

    def values_at(self, ordinals: npt.NDArray[np.int64]) -> list[Any]:
        """``value_at`` of many ordinals at once: the codes taken by numpy, the values by one
        object-array take (a set dimension's frozensets still one per user)."""
        values = self.values
        table = np.empty(len(values) + 1, dtype=object)
        table[:-1] = values
        table[-1] = None  # code -1: missing
        if self.offsets is None:
            codes = np.asarray(self.codes)[ordinals]
            return table[np.where(codes < 0, len(values), codes)].tolist()  # type: ignore[no-any-return]
        offsets = np.asarray(self.offsets)
        starts = offsets[ordinals].astype(np.int64)
        lengths = offsets[ordinals + 1].astype(np.int64) - starts
        # every user's codes in one take: positions start..end-1 of each user, concatenated
        firsts = np.cumsum(lengths) - lengths  # where each user's run begins in ``flat``
        flat = np.repeat(starts - firsts, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
        members = table[np.asarray(self.codes)[flat]].tolist()
        out: list[Any] = []
        at = 0
        for n in lengths.tolist():
            out.append(frozenset(members[at : at + n]) if n else None)
            at += n
        return out

    def range(
        self, low: float | None, high: float | None, low_inc: bool, high_inc: bool
    ) -> AbstractBitMap:
        """Users whose number lies in the interval (by the dimension's layout, over ranks)."""
        bounds = self.rank_bounds(low, high, low_inc, high_inc)
        if bounds is None:
            return EMPTY
        assert self.numbers is not None
        return self.numbers.range(bounds[0], bounds[1])

    def rank_bounds(
        self, low: float | None, high: float | None, low_inc: bool, high_inc: bool
    ) -> tuple[int, int] | None:
        """The inclusive rank interval of a value interval (``None``: no value inside)."""
        if self.numbers is None:
            raise InvalidValue(f"dimension {self.name!r} is not a number", field=self.name)
        assert self._distinct_list is not None
        return bsi.rank_bounds(self._distinct_list, low, high, low_inc, high_inc)


class SegmentReader:
    """List/rule segments: bitmaps per expiry group, unioned over the groups still alive."""

    def __init__(self, root: Path, meta: dict[str, Any], clock: Callable[[], float]) -> None:
        self.meta = meta
        self._blob = load_bytes(root / SEGMENTS)
        self._clock = clock
        # one entry per segment of this (immutable) snapshot: bounded by the manifest
        self._groups: dict[str, list[tuple[int | None, FrozenBitMap]]] = {}
        self._union_cache: LRUCache[tuple[str, tuple[int, ...]], FrozenBitMap] = LRUCache(
            maxsize=UNION_CACHE_ENTRIES
        )
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Segment names stored in the snapshot."""
        return sorted(self.meta)

    def groups(self, name: str) -> list[tuple[int | None, FrozenBitMap]]:
        """``(expires_at, members)`` per group of one segment."""
        got = self._groups.get(name)
        if got is None:
            got = [
                (g["expires_at"], read_bitmap(self._blob, g["offset"], g["offset"] + g["length"]))
                for g in self.meta.get(name, {}).get("groups", [])
            ]
            self._groups[name] = got
        return got

    def alive(self, name: str, now: float | None = None) -> FrozenBitMap:
        """Members whose membership has not expired at ``now`` (default: the clock)."""
        t = self._clock() if now is None else now
        groups = self.groups(name)
        keep = tuple(i for i, (exp, _) in enumerate(groups) if exp is None or exp > t)
        if len(keep) == len(groups) == 1:
            return groups[0][1]
        key = (name, keep)
        with self._lock:  # an LRU read reorders it: not safe to race with a write
            hit = self._union_cache.get(key)
        if hit is None:
            union = BitMap.union(BitMap(), *(groups[i][1] for i in keep))
            hit = FrozenBitMap(union, optimize=False)
            with self._lock:
                self._union_cache[key] = hit
        return hit

    def member_of(self, ordinal: int, now: float | None = None) -> frozenset[str]:
        """Names of the segments this user belongs to right now."""
        t = self._clock() if now is None else now
        out = []
        for name in self.meta:
            for exp, bm in self.groups(name):
                if (exp is None or exp > t) and ordinal in bm:
                    out.append(name)
                    break
        return frozenset(out)


class SnapshotIndex:
    """Implements ``adtarget.rules.eval_bitmap.BitmapIndex`` over one snapshot directory."""

    def __init__(
        self,
        root: Path,
        dims: dict[str, DimReader],
        segments: SegmentReader,
        num_ordinals: int | None = None,
    ) -> None:
        keep_freed_heap()
        self._dims = dims
        self._segments = segments
        blob = load_bytes(root / UNIVERSE)
        self._universe = read_bitmap(blob, 0, len(blob))
        self._num_ordinals = num_ordinals
        self._dense: DenseIndex | None = None
        self.dense_enabled = True  # off: every count through Roaring (the bench's baseline)

    @property
    def dense(self) -> DenseIndex | None:
        """Dense evaluation over this snapshot (``audience/dense_rules``), made on first use;
        ``None`` when the ordinal count is unknown."""
        if not self.dense_enabled:
            return None
        if self._dense is None and self._num_ordinals is not None:
            self._dense = DenseIndex(self, self._num_ordinals, DenseCache())
        return self._dense

    def dim(self, name: str) -> DimReader | None:
        """One dimension's reader, or ``None``."""
        return self._dims.get(name)

    def universe(self) -> FrozenBitMap:
        """Every live user."""
        return self._universe

    def _dim(self, dim: str) -> DimReader | None:
        return self._dims.get(dim)

    def equals(self, dim: str, value: Any) -> AbstractBitMap:
        """Users whose (category, bool or number) value equals ``value``."""
        reader = self._dim(dim)
        if reader is None:
            return EMPTY
        if reader.type == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return EMPTY
            return reader.range(value, value, True, True)
        if reader.type == "set":
            return self.contains(dim, value)
        code = reader.code_of(value)
        return EMPTY if code is None else reader.bitmap(code)

    def present(self, dim: str) -> FrozenBitMap:
        """Users with a value for ``dim`` (non-empty for sets)."""
        reader = self._dim(dim)
        return EMPTY if reader is None else reader.present()

    def contains(self, dim: str, value: Any) -> FrozenBitMap:
        """Users whose set holds ``value``."""
        reader = self._dim(dim)
        if reader is None:
            return EMPTY
        code = reader.code_of(value)
        return EMPTY if code is None else reader.bitmap(code)

    def range(
        self,
        dim: str,
        low: float | None,
        high: float | None,
        low_inclusive: bool = True,
        high_inclusive: bool = True,
    ) -> AbstractBitMap:
        """Users whose number lies between the bounds (``None`` = unbounded)."""
        reader = self._dim(dim)
        if reader is None:
            return EMPTY
        return reader.range(low, high, low_inclusive, high_inclusive)

    def segment(self, name: str) -> FrozenBitMap:
        """Current (unexpired) members of a stored segment; unknown names match nobody."""
        if name not in self._segments.meta:
            return EMPTY
        return self._segments.alive(name)


def now_seconds() -> float:
    """The wall clock used for TTL expiry (a function so tests can pass their own)."""
    return time.time()
