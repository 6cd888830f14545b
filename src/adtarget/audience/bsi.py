"""Numbers as bitmaps: bit-sliced (BSI) over value ranks, plus range-encoded rank buckets.

Why ranks and not raw values: mapping each value to its rank among the sorted distinct values
makes any number type (ints, floats, negative, huge) a small dense integer, so ``ceil(log2(K))``
slices cover K distinct values. A range query is two bisections on the distinct values plus
O(bits) bitmap operations, never a union over one bitmap per value.

Why buckets too: on 10M users every BSI step is a dense 1.25 MB bitmap operation (~0.3 ms
here), so a 6-bit range costs milliseconds. Ranks are therefore also cut into at most 64
equal-population buckets with a range-encoded (cumulative, ``rank <= bucket end``) bitmap per
bucket: ``rank <= c`` is one stored bitmap when ``c`` ends a bucket (always, when K <= 64),
else that bitmap plus the BSI run only over the one bucket's members (a small bitmap).
"""

from __future__ import annotations

import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import AbstractBitMap, BitMap, FrozenBitMap


def bitmap_from_sorted(ordinals: npt.NDArray[np.uint32]) -> FrozenBitMap:
    """Build a bitmap from a uint32 array in one C call (the array.array fast path).

    Not run-optimized: ``layout.compact_bitmap`` picks the stored form once, at write time.
    """
    buf = array.array("I")
    buf.frombytes(np.ascontiguousarray(ordinals, dtype=np.uint32).tobytes())
    return FrozenBitMap(buf, optimize=False)


def encode_ranks(
    values: npt.NDArray[np.generic],
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.int32]]:
    """Sorted distinct values and each value's rank among them.

    A hash dictionary-encode (O(n)) and a sort of the K distinct values only, instead of
    sorting all n values: K is tiny next to n for real dimensions (ages, prices, scores).
    """
    if values.dtype.kind == "f":
        values = np.add(values, 0.0)  # -0.0 and 0.0 are one value
    enc = pc.dictionary_encode(pa.array(values))
    dictionary = enc.dictionary.to_numpy(zero_copy_only=False)
    order = np.argsort(dictionary, kind="stable")
    rank_of_code = np.empty(len(order), dtype=np.int32)
    rank_of_code[order] = np.arange(len(order), dtype=np.int32)
    codes = enc.indices.to_numpy(zero_copy_only=False)
    return dictionary[order], rank_of_code[codes]


INT_SPAN_MAX = 1 << 20


def int_ranks(
    parts: Sequence[npt.NDArray[np.integer[Any]]],
    valid: Sequence[npt.NDArray[np.bool_]],
    max_span: int = INT_SPAN_MAX,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]] | None:
    """Sorted distinct values of integer ``parts`` (where ``valid``) and their ranks by
    ``value - distinct[0]``, when the values span at most ``max_span`` integers (ages, counts);
    else ``None`` (use ``encode_ranks``). One pass per part, no full-size copy or hash table."""
    lo = hi = None
    for part, ok in zip(parts, valid, strict=True):
        if ok.any():
            present = part[ok]
            a, b = int(present.min()), int(present.max())
            lo, hi = (a, b) if lo is None or hi is None else (min(lo, a), max(hi, b))
    if lo is None or hi is None or hi - lo >= max_span:
        return None
    seen = np.zeros(hi - lo + 1, dtype=bool)
    for part, ok in zip(parts, valid, strict=True):
        seen[part[ok].astype(np.int64) - lo] = True
    offsets = np.flatnonzero(seen)
    rank_of = np.full(hi - lo + 1, -1, dtype=np.int32)
    rank_of[offsets] = np.arange(len(offsets), dtype=np.int32)
    return offsets + lo, rank_of


def num_bits(num_distinct: int) -> int:
    """Slices needed for ranks ``0..num_distinct-1`` (at least one)."""
    return max(1, int(num_distinct - 1).bit_length())


def build_slices(
    ordinals: npt.NDArray[np.uint32], ranks: npt.NDArray[np.int32], bits: int
) -> list[FrozenBitMap]:
    """Slice ``j`` holds the ordinals whose rank has bit ``j`` set (ordinals ascending)."""
    out: list[FrozenBitMap] = []
    for j in range(bits):
        mask = ((ranks >> j) & 1).astype(bool)
        out.append(bitmap_from_sorted(ordinals[mask]))
    return out


def rank_bounds(
    distinct: Sequence[float] | npt.NDArray[np.generic],
    low: float | None,
    high: float | None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> tuple[int, int] | None:
    """Inclusive rank interval for a value interval, or ``None`` when no value can match."""
    k = len(distinct)
    lo = 0 if low is None else (bisect_left if low_inclusive else bisect_right)(distinct, low)
    if high is None:
        hi = k - 1
    else:
        hi = (bisect_right if high_inclusive else bisect_left)(distinct, high) - 1
    if lo > hi or k == 0:
        return None
    return lo, hi


def _le(slices: Sequence[AbstractBitMap], eq: BitMap, lt: BitMap, c: int, top: int) -> BitMap:
    """Finish ``rank <= c`` from bit ``top`` down, given the users equal so far (``eq``)."""
    for j in range(top, -1, -1):
        if (c >> j) & 1:
            lt |= eq - slices[j]
            eq &= slices[j]
        else:
            eq -= slices[j]
    lt |= eq
    return lt


MAX_BUCKETS = 64


def bucket_starts(counts: npt.NDArray[np.int64], max_buckets: int = MAX_BUCKETS) -> list[int]:
    """First rank of each bucket: one rank per bucket when K <= max_buckets, else quantiles."""
    k = len(counts)
    if k <= max_buckets:
        return list(range(k))
    cum = np.cumsum(counts)
    targets = np.arange(max_buckets) * (cum[-1] / max_buckets)
    starts = np.unique(np.searchsorted(cum, targets, side="right"))
    starts = starts[starts < k]
    out = [0] + [int(x) for x in starts if x > 0]
    return out


def build_number(
    ordinals: npt.NDArray[np.uint32], ranks: npt.NDArray[np.int32], k: int
) -> tuple[list[FrozenBitMap], dict[str, object]]:
    """Bitmaps ``[slices..., bucket members..., cumulative buckets..., present]`` and meta."""
    bits = num_bits(k)
    starts = bucket_starts(np.bincount(ranks, minlength=k)) if k else []
    bucket_of: npt.NDArray[np.signedinteger[Any]]
    if len(starts) == k:
        bucket_of = ranks
    else:
        bucket_of = np.searchsorted(np.asarray(starts, dtype=np.int64), ranks, side="right") - 1
    members: list[FrozenBitMap] = []
    if starts:
        order = np.argsort(bucket_of.astype(np.uint16), kind="stable")
        grouped = ordinals[order]
        bounds = np.zeros(len(starts) + 1, dtype=np.int64)
        np.cumsum(np.bincount(bucket_of, minlength=len(starts)), out=bounds[1:])
        members = [
            bitmap_from_sorted(grouped[bounds[i] : bounds[i + 1]]) for i in range(len(starts))
        ]
    if len(starts) == k:  # one bucket per rank: a slice is the union of its ranks' members
        slices = [
            FrozenBitMap(
                BitMap.union(BitMap(), *(m for r, m in enumerate(members) if r >> j & 1)),
                optimize=False,
            )
            for j in range(bits)
        ]
    else:
        slices = build_slices(ordinals, ranks, bits)
    cumulative: list[FrozenBitMap] = []
    acc = BitMap()
    for m in members:
        acc |= m
        cumulative.append(FrozenBitMap(acc, optimize=False))
    present = bitmap_from_sorted(ordinals)
    meta: dict[str, object] = {"bits": bits, "buckets": starts}
    return slices + members + cumulative + [present], meta


class NumberBitmaps:
    """Range queries over one number dimension's stored bitmaps (see ``build_number``)."""

    def __init__(
        self, get: Callable[[int], AbstractBitMap], bits: int, starts: list[int], k: int
    ) -> None:
        self._get = get
        self.bits = bits
        self.starts = starts
        self.k = k
        self._nb = len(starts)

    def slices(self) -> list[AbstractBitMap]:
        return [self._get(j) for j in range(self.bits)]

    def members(self, b: int) -> AbstractBitMap:
        return self._get(self.bits + b)

    def cumulative(self, b: int) -> AbstractBitMap:
        return self._get(self.bits + self._nb + b)

    def _bucket_end(self, b: int) -> int:
        return self.starts[b + 1] - 1 if b + 1 < self._nb else self.k - 1

    def le(self, c: int) -> AbstractBitMap:
        """Users with rank <= c (c within 0..k-1)."""
        b = bisect_right(self.starts, c) - 1
        if c == self._bucket_end(b):
            return self.cumulative(b)
        # optimize=False: a copy to mutate, not a stored form (run_optimize costs ~40x the copy)
        members = BitMap(self.members(b), optimize=False)
        part = _le(self.slices(), members, BitMap(), c, self.bits - 1)
        if b == 0:
            return part
        return self.cumulative(b - 1) | part

    def range(self, lo: int, hi: int) -> AbstractBitMap:
        """Users with lo <= rank <= hi."""
        upper = self.le(hi)
        if lo <= 0:
            return upper
        return upper - self.le(lo - 1)
