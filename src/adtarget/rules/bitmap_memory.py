"""``MemoryBitmapIndex``: an in-memory reference ``BitmapIndex`` for tests and benchmarks.

Numbers are bit-sliced over *ranks*: each distinct value gets its rank in sorted order and a
number dimension stores ``ceil(log2(distinct))`` bitmaps (bit i of each user's rank), so a range is
answered with O(bits) bitmap operations, exactly, for ints and floats alike — not a union of one
bitmap per distinct value. The audience snapshot index implements the same protocol on disk.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import AbstractBitMap, BitMap, FrozenBitMap

from adtarget.errors import InvalidValue
from adtarget.rules.ast import SEGMENTS_FIELD, Value
from adtarget.rules.registry import DimensionSpec

_EMPTY = FrozenBitMap()


@dataclass(frozen=True, slots=True, eq=False)
class BitSlicedNumbers:
    """One number dimension: sorted distinct values and bit slices of each user's rank."""

    values: npt.NDArray[np.float64]
    slices: tuple[FrozenBitMap, ...]
    present: FrozenBitMap

    @classmethod
    def build(cls, ordinals: npt.ArrayLike, numbers: npt.ArrayLike) -> BitSlicedNumbers:
        """Index ``numbers[i]`` as the value of user ``ordinals[i]`` (no NaN)."""
        ords = np.asarray(ordinals, dtype=np.uint32)
        distinct, ranks = np.unique(np.asarray(numbers, dtype=np.float64), return_inverse=True)
        ranks = ranks.reshape(-1)
        bits = max(1, math.ceil(math.log2(len(distinct)))) if len(distinct) > 1 else 1
        slices = tuple(FrozenBitMap(ords[(ranks >> i) & 1 == 1]) for i in range(bits))
        return cls(distinct, slices, FrozenBitMap(ords))

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
        lo = 0 if low is None else int(np.searchsorted(vals, low, "left" if low_inc else "right"))
        hi = (
            len(vals)
            if high is None
            else int(np.searchsorted(vals, high, "right" if high_inc else "left"))
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

    @classmethod
    def from_arrow(
        cls, table: pa.Table, registry: Mapping[str, DimensionSpec]
    ) -> MemoryBitmapIndex:
        """Index an Arrow table (row i = ordinal i) column-wise with numpy: fast for benchmarks.

        Columns: category → string, number → integer/floating, bool → boolean, set and
        ``__segments__`` → list<string>; NULL = missing. Other columns are ignored.
        """
        n = table.num_rows
        index = cls(num_users=n, registry=registry)
        index._universe = FrozenBitMap(range(n))
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if name == SEGMENTS_FIELD:
                index._segments = {str(v): bm for (_, v), bm in _group_lists(name, col).items()}
                continue
            spec = registry.get(name)
            if spec is None:
                continue
            valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            if spec.type == "number":
                if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
                    raise InvalidValue(f"column {name} is {col.type}, not a number", field=name)
                nums = np.asarray(col.cast(pa.float64()).fill_null(0.0).to_numpy())[valid]
                if not np.isfinite(nums).all():
                    raise InvalidValue(f"column {name} holds NaN/inf", field=name)
                if len(nums):
                    index._numbers[name] = BitSlicedNumbers.build(np.flatnonzero(valid), nums)
            elif spec.type == "set":
                if not (pa.types.is_list(col.type) and pa.types.is_string(col.type.value_type)):
                    raise InvalidValue(f"column {name} is {col.type}, not list<string>", field=name)
                index._equals.update(_group_lists(name, col))
                lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy()
                index._present[name] = FrozenBitMap(np.flatnonzero(lengths > 0).astype(np.uint32))
            else:
                want = pa.types.is_boolean if spec.type == "bool" else pa.types.is_string
                if not want(col.type):
                    raise InvalidValue(f"column {name} is {col.type}, not {spec.type}", field=name)
                index._equals.update(_group(name, col, np.arange(n, dtype=np.uint32)))
                index._present[name] = FrozenBitMap(np.flatnonzero(valid).astype(np.uint32))
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


def _group(
    dim: str, values: pa.Array, ordinals: npt.NDArray[np.uint32]
) -> dict[tuple[str, Value], FrozenBitMap]:
    """One bitmap per distinct non-null value: ordinals grouped by a stable sort of codes."""
    encoded = pc.dictionary_encode(values)
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(), dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    out: dict[tuple[str, Value], FrozenBitMap] = {}
    for k, value in enumerate(encoded.dictionary.to_pylist()):
        lo, hi = np.searchsorted(sorted_codes, [k, k + 1])
        out[(dim, value)] = FrozenBitMap(ordinals[order[lo:hi]])
    return out


def _group_lists(dim: str, col: pa.Array) -> dict[tuple[str, Value], FrozenBitMap]:
    """Set column: one bitmap per element value, over the rows whose list holds it."""
    parents = np.asarray(pc.list_parent_indices(col).to_numpy(), dtype=np.uint32)
    return _group(dim, pc.list_flatten(col), parents)
