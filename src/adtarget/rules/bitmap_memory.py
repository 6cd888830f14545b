"""``MemoryBitmapIndex``: an in-memory reference ``BitmapIndex`` for tests and benchmarks.

Numbers are bit-sliced over *ranks*: each distinct value gets its rank in sorted order and a
number dimension stores ``ceil(log2(distinct))`` bitmaps (bit i of each user's rank), so a range is
answered with O(bits) bitmap operations, exactly, for ints and floats alike — not a union of one
bitmap per distinct value. The audience snapshot index implements the same protocol on disk.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyroaring import AbstractBitMap, BitMap, FrozenBitMap

from adtarget.errors import InvalidValue
from adtarget.rules.ast import SEGMENTS_FIELD, Value
from adtarget.rules.registry import DimensionSpec

_EMPTY = FrozenBitMap()


@dataclass(frozen=True, slots=True)
class BitSlicedNumbers:
    """One number dimension: sorted distinct values and bit slices of each user's rank."""

    values: tuple[float, ...]
    slices: tuple[FrozenBitMap, ...]
    present: FrozenBitMap

    @classmethod
    def build(cls, ordinals: list[int], numbers: list[float]) -> BitSlicedNumbers:
        distinct = sorted(set(numbers))
        rank_of = {v: i for i, v in enumerate(distinct)}
        ords = np.asarray(ordinals, dtype=np.uint32)
        ranks = np.fromiter((rank_of[v] for v in numbers), dtype=np.int64, count=len(numbers))
        bits = max(1, math.ceil(math.log2(len(distinct)))) if len(distinct) > 1 else 1
        slices = tuple(FrozenBitMap(ords[(ranks >> i) & 1 == 1]) for i in range(bits))
        return cls(tuple(distinct), slices, FrozenBitMap(ords))

    def rank_le(self, c: int) -> AbstractBitMap:
        """Users whose rank is <= ``c`` (O'Neil & Quass bit-sliced comparison)."""
        if c < 0:
            return _EMPTY
        if c >= len(self.values) - 1:
            return self.present
        lt = BitMap()
        eq: AbstractBitMap = self.present
        for i in reversed(range(len(self.slices))):
            if (c >> i) & 1:
                lt |= eq - self.slices[i]
                eq = eq & self.slices[i]
            else:
                eq = eq - self.slices[i]
        return lt | eq

    def between(
        self, low: float | None, high: float | None, low_inc: bool, high_inc: bool
    ) -> AbstractBitMap:
        vals = self.values
        lo = (
            0
            if low is None
            else (bisect.bisect_left if low_inc else bisect.bisect_right)(vals, low)
        )
        hi = (
            len(vals)
            if high is None
            else (bisect.bisect_right if high_inc else bisect.bisect_left)(vals, high)
        )
        if lo >= hi:
            return _EMPTY
        upper = self.rank_le(hi - 1)
        return upper if lo == 0 else upper - self.rank_le(lo - 1)


@dataclass
class MemoryBitmapIndex:
    """Reference ``BitmapIndex`` over rows numbered 0..n-1 (row position = user ordinal)."""

    num_users: int
    registry: Mapping[str, DimensionSpec]
    _equals: dict[tuple[str, Value], FrozenBitMap] = field(default_factory=dict)
    _present: dict[str, FrozenBitMap] = field(default_factory=dict)
    _numbers: dict[str, BitSlicedNumbers] = field(default_factory=dict)
    _segments: dict[str, FrozenBitMap] = field(default_factory=dict)
    _universe: FrozenBitMap = field(default_factory=FrozenBitMap)

    @classmethod
    def from_rows(
        cls, rows: Iterable[Mapping[str, Any]], registry: Mapping[str, DimensionSpec]
    ) -> MemoryBitmapIndex:
        """Index feature rows (missing = absent/None; sets any iterable of str).

        Raises ``InvalidValue`` naming the row and dimension when a value has the wrong type.
        """
        eq: dict[tuple[str, Value], list[int]] = defaultdict(list)
        present: dict[str, list[int]] = defaultdict(list)
        nums: dict[str, tuple[list[int], list[float]]] = {}
        segs: dict[str, list[int]] = defaultdict(list)
        n = 0
        for i, row in enumerate(rows):
            n = i + 1
            for dim, value in row.items():
                if dim == SEGMENTS_FIELD:
                    for name in value or ():
                        segs[str(name)].append(i)
                    continue
                spec = registry.get(dim)
                if spec is None or value is None:
                    continue
                _add(spec, value, i, eq, present, nums)
        index = cls(num_users=n, registry=registry)
        index._universe = FrozenBitMap(range(n))
        index._equals = {k: FrozenBitMap(v) for k, v in eq.items()}
        index._present = {k: FrozenBitMap(v) for k, v in present.items()}
        index._numbers = {k: BitSlicedNumbers.build(o, v) for k, (o, v) in nums.items()}
        index._segments = {k: FrozenBitMap(v) for k, v in segs.items()}
        return index

    def universe(self) -> AbstractBitMap:
        return self._universe

    def equals(self, dim: str, value: Value) -> AbstractBitMap:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self.range(dim, float(value), float(value), True, True)
        return self._equals.get((dim, value), _EMPTY)

    def present(self, dim: str) -> AbstractBitMap:
        if dim in self._numbers:
            return self._numbers[dim].present
        return self._present.get(dim, _EMPTY)

    def contains(self, dim: str, value: str) -> AbstractBitMap:
        return self._equals.get((dim, value), _EMPTY)

    def range(
        self,
        dim: str,
        low: float | None,
        high: float | None,
        low_inclusive: bool,
        high_inclusive: bool,
    ) -> AbstractBitMap:
        numbers = self._numbers.get(dim)
        if numbers is None:
            return _EMPTY
        return numbers.between(low, high, low_inclusive, high_inclusive)

    def segment(self, name: str) -> AbstractBitMap:
        return self._segments.get(name, _EMPTY)


def _add(
    spec: DimensionSpec,
    value: Any,
    i: int,
    eq: dict[tuple[str, Value], list[int]],
    present: dict[str, list[int]],
    nums: dict[str, tuple[list[int], list[float]]],
) -> None:
    dim = spec.name

    def bad(want: str) -> InvalidValue:
        return InvalidValue(f"row {i}: {dim} = {value!r} is not {want}", field=dim, row=i)

    if spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        if not math.isfinite(value):
            raise bad("a finite number")
        ords, vals = nums.setdefault(dim, ([], []))
        ords.append(i)
        vals.append(float(value))
    elif spec.type == "set":
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise bad("a set of strings")
        members = set(value)
        if not all(isinstance(m, str) for m in members):
            raise bad("a set of strings")
        for m in members:
            eq[(dim, m)].append(i)
        if members:
            present[dim].append(i)
    else:
        ok = isinstance(value, bool) if spec.type == "bool" else isinstance(value, str)
        if not ok:
            raise bad("true/false" if spec.type == "bool" else "a string")
        eq[(dim, value)].append(i)
        present[dim].append(i)
