"""Bit-sliced bitmap index (BSI) over value ranks, for numeric range predicates.

Why ranks and not raw values: mapping each value to its rank among the sorted distinct values
makes any number type (ints, floats, negative, huge) a small dense integer, so ``ceil(log2(K))``
slices cover K distinct values. A range query is then two bisections on the distinct values plus
O(bits) bitmap operations, instead of a union over one bitmap per value (which grows with K).
"""

from __future__ import annotations

import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pyroaring import AbstractBitMap, BitMap, FrozenBitMap


def bitmap_from_sorted(ordinals: npt.NDArray[np.uint32]) -> FrozenBitMap:
    """Build a bitmap from a uint32 array in one C call (the array.array fast path)."""
    buf = array.array("I")
    buf.frombytes(np.ascontiguousarray(ordinals, dtype=np.uint32).tobytes())
    return FrozenBitMap(buf)


def encode_ranks(
    values: npt.NDArray[np.generic],
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.int32]]:
    """Sorted distinct values and each value's rank among them."""
    distinct, ranks = np.unique(values, return_inverse=True)
    return distinct, ranks.astype(np.int32, copy=False).reshape(-1)


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
    if low is None:
        lo = 0
    else:
        lo = (bisect_left if low_inclusive else bisect_right)(distinct, low)
    if high is None:
        hi = k - 1
    else:
        hi = (bisect_right if high_inclusive else bisect_left)(distinct, high) - 1
    if lo > hi or k == 0:
        return None
    return lo, hi


def _le(
    slices: Sequence[AbstractBitMap], eq: BitMap, lt: BitMap, c: int, top: int
) -> BitMap:
    """Finish ``rank <= c`` from bit ``top`` down, given the users equal so far (``eq``)."""
    for j in range(top, -1, -1):
        if (c >> j) & 1:
            lt |= eq - slices[j]
            eq &= slices[j]
        else:
            eq -= slices[j]
    lt |= eq
    return lt


def range_ranks(
    slices: Sequence[AbstractBitMap], present: AbstractBitMap, lo: int, hi: int
) -> BitMap:
    """Users whose rank lies in ``[lo, hi]`` (both inclusive), among ``present`` users.

    The bits ``lo`` and ``hi`` share at the top are applied once; then ``rank <= hi`` minus
    ``rank <= lo - 1`` is computed from that common prefix, O(bits) operations in all.
    """
    bits = len(slices)
    full = (1 << bits) - 1
    if lo <= 0 and hi >= full:
        return BitMap(present)
    eq = BitMap(present)
    j = bits - 1
    while j >= 0 and ((lo >> j) & 1) == ((hi >> j) & 1):
        if (hi >> j) & 1:
            eq &= slices[j]
        else:
            eq -= slices[j]
        j -= 1
    if j < 0:
        return eq
    prefix = eq
    le_hi = _le(slices, BitMap(prefix), BitMap(), hi, j)
    if lo & ((1 << (j + 1)) - 1) == 0:  # lo starts the prefix block: nothing below it
        return le_hi
    le_lo = _le(slices, BitMap(prefix), BitMap(), lo - 1, j)
    le_hi -= le_lo
    return le_hi
