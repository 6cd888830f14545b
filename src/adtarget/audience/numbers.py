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
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from pyroaring import AbstractBitMap, BitMap, FrozenBitMap

from adtarget.audience import bsi
from adtarget.audience.columns import group_bitmaps

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

    def le(self, c: int) -> AbstractBitMap:
        """Users with rank <= c."""
        return self._get(c if c < self.k - 1 else self._present)

    def range(self, lo: int, hi: int) -> AbstractBitMap:
        """Users with lo <= rank <= hi."""
        upper = self.le(hi)
        return upper if lo <= 0 else upper - self.le(lo - 1)


class BucketedEquality:
    """Equality bitmap per rank plus cumulative bitmaps at bucket ends (see module doc)."""

    def __init__(self, get: Callable[[int], AbstractBitMap], k: int, starts: list[int]) -> None:
        self._get = get
        self.k = k
        self.starts = starts
        self.ends = [s - 1 for s in starts[1:]] + [k - 1]

    def _cum(self, b: int) -> AbstractBitMap:
        return self._get(self.k + b)

    def _eqs(self, lo: int, hi: int) -> list[AbstractBitMap]:
        return [self._get(r) for r in range(lo, hi + 1)]

    def range(self, lo: int, hi: int) -> AbstractBitMap:
        """Users with lo <= rank <= hi."""
        b_lo = bisect_right(self.starts, lo) - 1
        b_hi = bisect_right(self.starts, hi) - 1
        if b_lo == b_hi and not (lo == self.starts[b_lo] and hi == self.ends[b_hi]):
            parts = self._eqs(lo, hi)
            return parts[0] if len(parts) == 1 else BitMap.union(*parts)
        first = b_lo if lo == self.starts[b_lo] else b_lo + 1
        last = b_hi if hi == self.ends[b_hi] else b_hi - 1
        parts = []
        if first > b_lo:
            parts += self._eqs(lo, self.ends[b_lo])
        if last < b_hi:
            parts += self._eqs(self.starts[b_hi], hi)
        if first <= last:
            whole = self._cum(last) if first == 0 else self._cum(last) - self._cum(first - 1)
            if not parts:
                return whole
            parts.append(whole)
        return parts[0] if len(parts) == 1 else BitMap.union(*parts)


NumberIndex = RangeEncoded | BucketedEquality | bsi.NumberBitmaps


def reader(get: Callable[[int], AbstractBitMap], meta: dict[str, Any], count: int) -> NumberIndex:
    """The range reader for one dimension's stored bitmaps (``count`` of them, present last).

    Snapshots written before layouts existed carry no ``layout``: they are ``bsi``.
    """
    k: int = meta["num_values"]
    layout = meta.get("layout", "bsi")
    if layout == "range":
        return RangeEncoded(get, k, count - 1)
    if layout == "buckets":
        return BucketedEquality(get, k, list(meta["buckets"]))
    return bsi.NumberBitmaps(get, meta.get("bits", 0), list(meta.get("buckets", [])), k)
