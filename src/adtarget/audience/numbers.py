"""Number dimensions as bitmaps: the representation is chosen per dimension by its values.

Why three layouts: on 10M users every operation on a dense bitmap costs ~0.05-0.1 ms, so a
range must touch as few dense bitmaps as possible. All three work over value *ranks* (see
``bsi.encode_ranks``), so ints, floats and negatives are alike.

- ``range`` (few distinct values, K <= ``RANGE_MAX``, e.g. age): range-encoded, one cumulative
  bitmap per rank (``rank <= r``). Any range is one stored bitmap or one difference of two.
  Memory: K-1 bitmaps of up to n bits (78 ages over 10M users: ~90 MB), the price of O(1).
- ``buckets`` (many distinct values, K <= ``EQUALITY_MAX``, e.g. watch hours to 0.1 h): one
  equality bitmap per rank (n values in all, sparse) plus range-encoded cumulative bitmaps at
  up to ``MAX_BUCKETS`` equal-population bucket ends. A range is one difference of two stored
  cumulatives for the whole buckets inside it, OR'd with the equality bitmaps of the ranks in
  the (at most two) partial buckets at its ends.
- ``bsi`` (very many distinct values): bit-sliced ranks plus buckets (``bsi.build_number``).

Every stored bitmap is run-compressed where that makes it far smaller (``layout.compact_bitmap``),
so data sorted by a dimension costs a fraction of the memory above; bitmaps built here are not
run-optimized (the write picks the stored form once).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

import numpy as np
import numpy.typing as npt
from pyroaring import AbstractBitMap, BitMap, FrozenBitMap

from adtarget.audience import bsi
from adtarget.audience.columns import group_bitmaps
from adtarget.audience.dense_build import bitmap_from_mask, cumulative_bitmaps
from adtarget.rules.eval_bitmap import union_all

RANGE_MAX = 128
EQUALITY_MAX = 65_536
MAX_BUCKETS = 64


def choose_layout(k: int, *, range_max: int = RANGE_MAX, equality_max: int = EQUALITY_MAX) -> str:
    """``range`` / ``buckets`` / ``bsi`` for a dimension with ``k`` distinct values."""
    if k <= range_max:
        return "range"
    if k <= equality_max:
        return "buckets"
    return "bsi"


def build_range(
    codes: npt.NDArray[np.signedinteger[Any]], k: int
) -> tuple[list[FrozenBitMap], dict[str, Any]]:
    """``build(..., layout="range")`` from the ranks by ordinal (negative: no value), one mask
    per rank (``dense_build``) instead of sorting the ordinals by rank."""
    bitmaps = cumulative_bitmaps(codes, k) + [bitmap_from_mask(codes >= 0)]
    return bitmaps, {"layout": "range", "bits": 0, "buckets": []}


def build(
    ordinals: npt.NDArray[np.uint32],
    ranks: npt.NDArray[np.int32],
    k: int,
    layout: str | None = None,
    max_buckets: int = MAX_BUCKETS,
) -> tuple[list[FrozenBitMap], dict[str, Any]]:
    """Bitmaps (``present`` last) and manifest meta for one number dimension."""
    layout = layout or choose_layout(k)
    present = bsi.bitmap_from_sorted(ordinals)
    if layout == "bsi" or k == 0:
        bitmaps, meta = bsi.build_number(ordinals, ranks, k)
        return bitmaps, {**meta, "layout": "bsi"}
    eq = group_bitmaps(ordinals, ranks, k)
    if layout == "range":
        cumulative: list[FrozenBitMap] = []
        acc = BitMap()
        for r in range(k - 1):
            acc |= eq[r]
            cumulative.append(FrozenBitMap(acc, optimize=False))
        return cumulative + [present], {"layout": "range", "bits": 0, "buckets": []}
    starts = bsi.bucket_starts(np.bincount(ranks, minlength=k), max_buckets)
    ends = [s - 1 for s in starts[1:]] + [k - 1]
    cum: list[FrozenBitMap] = []
    acc = BitMap()
    for s, e in zip(starts, ends, strict=True):
        acc |= BitMap.union(BitMap(), *eq[s : e + 1])
        cum.append(FrozenBitMap(acc, optimize=False))
    return eq + cum + [present], {"layout": "buckets", "bits": 0, "buckets": starts}


class RangeEncoded:
    """``rank <= r`` stored for every rank: a range is at most one difference."""

    def __init__(self, get: Callable[[int], AbstractBitMap], k: int, present: int) -> None:
        self._get = get
        self.k = k
        self._present = present

    def le_index(self, c: int) -> int:
        """Which stored bitmap is ``rank <= c``."""
        return c if c < self.k - 1 else self._present

    def le(self, c: int) -> AbstractBitMap:
        """Users with rank <= c."""
        return self._get(self.le_index(c))

    def range(self, lo: int, hi: int) -> AbstractBitMap:
        """Users with lo <= rank <= hi."""
        upper = self.le(hi)
        return upper if lo <= 0 else upper - self.le(lo - 1)


RANK_COST = 1000
"""Cost of touching one more equality bitmap, in users (a fetch and a call, ~1-2 µs)."""
DENSE_SHARE = 64
"""A whole-bitmap operation on dense bitmaps costs about as much as OR-ing 1/64 of the users
from sparse bitmaps (SIMD over 8 KB bitsets against one write per member)."""


class BucketedEquality:
    """Equality bitmap per rank plus cumulative bitmaps at bucket ends (see module doc).

    A range ``[lo, hi]`` is planned as ``(cum(Le), cum(Ue)] - REMOVE | ADD`` over the bucket
    ends ``Le``/``Ue`` around its bounds, or as the union of its equality bitmaps alone; the
    plan touching the fewest users wins. Why: on a skewed number (watch hours) a tail bucket
    spans hundreds of ranks, and ``>= 50`` was the union of 53 equality bitmaps (1.6 ms on 10M
    users) where taking the bucket whole and removing the 3 ranks below 50 costs a tenth.
    """

    def __init__(
        self,
        get: Callable[[int], AbstractBitMap],
        k: int,
        starts: list[int],
        weights: Sequence[int] | None = None,
    ) -> None:
        self._get = get
        self.k = k
        self.starts = starts
        self.ends = [s - 1 for s in starts[1:]] + [k - 1]
        self._weights = weights
        self._prefix: list[int] | None = None
        self._dense = 0

    def _cost(self, lo: int, hi: int) -> int:
        """Users (by the stored sizes) plus per-bitmap cost of the ranks ``lo..hi``."""
        if lo > hi:
            return 0
        if self._prefix is None:
            w = self._weights
            if w is None:  # no stored sizes (a reader over in-memory bitmaps): cardinalities
                w = [len(self._get(r)) for r in range(self.k)]
            self._prefix = [0, *accumulate(int(x) for x in w[: self.k])]
            self._dense = self._prefix[-1] // DENSE_SHARE
        return self._prefix[hi + 1] - self._prefix[lo] + RANK_COST * (hi - lo + 1)

    def cum_index(self, end: int) -> int:
        """Which stored bitmap is ``rank <= end`` for a bucket end."""
        return self.k + bisect_right(self.starts, end) - 1

    def _cum(self, end: int) -> AbstractBitMap:
        """``rank <= end`` for a bucket end."""
        return self._get(self.cum_index(end))

    def union(self, spans: list[tuple[int, int]]) -> AbstractBitMap | None:
        """The equality bitmaps of the ranks in ``spans`` OR'd (``None``: no rank)."""
        return self._union(spans)

    def _union(self, spans: list[tuple[int, int]]) -> AbstractBitMap | None:
        parts = [self._get(r) for lo, hi in spans for r in range(lo, hi + 1)]
        if not parts:
            return None
        return union_all(parts)

    def _around(self, c: int) -> list[int]:
        """Bucket ends to start a prefix ``rank <= c`` from: the bucket's own end and the
        previous one (-1: nothing)."""
        if c < 0:
            return [-1]
        b = bisect_right(self.starts, c) - 1
        return [self.ends[b], self.ends[b - 1] if b else -1]

    def plan(self, lo: int, hi: int) -> tuple[int, int] | None:
        """The bucket ends ``(le, ue)`` to start ``[lo, hi]`` from, or ``None``: the union of
        its equality bitmaps alone touches the fewest users."""
        best = self._cost(lo, hi)
        plan: tuple[int, int] | None = None
        for ue in self._around(hi):
            for le in self._around(lo - 1):
                if le >= ue:
                    continue
                add, rem = spans(lo, hi, le, ue)
                cost = self._dense * (1 + (le >= 0) + bool(add) + bool(rem))
                cost += sum(self._cost(a, b) for a, b in add + rem)
                if cost < best:
                    best, plan = cost, (le, ue)
        return plan

    def range(self, lo: int, hi: int) -> AbstractBitMap:
        """Users with lo <= rank <= hi."""
        plan = self.plan(lo, hi)
        if plan is None:
            whole = self._union([(lo, hi)])
            assert whole is not None
            return whole
        le, ue = plan
        add, rem = spans(lo, hi, le, ue)
        acc = self._cum(ue) if le < 0 else self._cum(ue) - self._cum(le)
        removed = self._union(rem)
        if removed is not None:
            acc = acc - removed
        added = self._union(add)
        return acc if added is None else acc | added


def spans(
    lo: int, hi: int, le: int, ue: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Rank spans to add to and remove from ``(le, ue]`` to make ``[lo, hi]``."""
    add = [(lo, min(hi, le)), (max(lo, ue + 1), hi)]
    rem = [(le + 1, min(ue, lo - 1)), (max(le + 1, hi + 1), ue)]
    return [s for s in add if s[0] <= s[1]], [s for s in rem if s[0] <= s[1]]


NumberIndex = RangeEncoded | BucketedEquality | bsi.NumberBitmaps


def reader(
    get: Callable[[int], AbstractBitMap],
    meta: dict[str, Any],
    count: int,
    weights: Sequence[int] | None = None,
) -> NumberIndex:
    """The range reader for one dimension's stored bitmaps (``count`` of them, present last).

    ``weights``: a cost per stored bitmap (its serialized size) for planning ranges.

    Snapshots written before layouts existed carry no ``layout``: they are ``bsi``.
    """
    k: int = meta["num_values"]
    layout = meta.get("layout", "bsi")
    if layout == "range":
        return RangeEncoded(get, k, count - 1)
    if layout == "buckets":
        return BucketedEquality(get, k, list(meta["buckets"]), weights)
    return bsi.NumberBitmaps(get, meta.get("bits", 0), list(meta.get("buckets", [])), k)
