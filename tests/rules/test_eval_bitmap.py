"""Bitmap evaluation and the reference index: bit-sliced ranges, copies, counts, bad rows."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import AbstractBitMap, BitMap, FrozenBitMap

from adtarget.errors import InvalidValue
from adtarget.rules.ast import Value
from adtarget.rules.bitmap_memory import BitSlicedNumbers
from adtarget.rules.eval_bitmap import BitmapIndex, MemoryBitmapIndex, count, evaluate
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec, make_registry

REG = make_registry(
    [
        DimensionSpec("country", "category"),
        DimensionSpec("age", "number"),
        DimensionSpec("premium", "bool"),
        DimensionSpec("genres", "set"),
    ]
)
ROWS: list[dict[str, Any]] = [
    {"country": "US", "age": 20, "genres": {"scifi"}, "premium": True, "__segments__": {"s"}},
    {"country": "CA", "age": 35.5, "genres": set()},
    {"age": 18, "country": None},
    {"country": "US", "genres": ["scifi", "drama"], "premium": False},
    {"unknown_dim": 1},
]
INDEX = MemoryBitmapIndex.from_rows(ROWS, REG)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('country = "US"', [0, 3]),
        ('country != "US"', [1, 2, 4]),
        ('country in ("CA", "MX")', [1]),
        ('country not in ("CA")', [0, 2, 3, 4]),
        ("age = 18", [2]),
        ("age in (18, 35.5, 99)", [1, 2]),
        ("age < 20", [2]),
        ("age <= 20", [0, 2]),
        ("age > 20", [1]),
        ("age >= 35.5", [1]),
        ("age between 18 and 20", [0, 2]),
        ("age between 21 and 30", []),
        ("premium = false", [3]),
        ("premium != true", [1, 2, 3, 4]),
        ('genres has any ("drama", "news")', [3]),
        ('genres has all ("scifi", "drama")', [3]),
        ('genres has all ("scifi")', [0, 3]),
        ("genres is missing", [1, 2, 4]),
        ("country is not missing", [0, 1, 3]),
        ('segment("s")', [0]),
        ('segment("nope")', []),
        ("not age > 0", [3, 4]),
        ('country = "US" and not premium = true', [3]),
        ("not premium = true and not age < 19", [1, 3, 4]),
        ('age < 19 or genres has any ("drama") or segment("s")', [0, 2, 3]),
        ("unknown_dim is missing", [0, 1, 2, 3, 4]),
    ],
)
def test_evaluate_and_count(text: str, expected: list[int]) -> None:
    rule = parse(text)
    assert list(evaluate(rule, INDEX)) == expected
    assert count(rule, INDEX) == len(expected)


def test_reference_index_satisfies_the_protocol() -> None:
    assert isinstance(INDEX, BitmapIndex)
    assert INDEX.num_users == 5
    assert list(INDEX.universe()) == [0, 1, 2, 3, 4]
    assert list(INDEX.equals("age", 20)) == [0]  # numbers via the bit-sliced ranges


def test_result_is_a_fresh_copy() -> None:
    rule = parse('country = "US"')
    first = evaluate(rule, INDEX)
    assert isinstance(first, BitMap)
    first.add(4)
    first.discard(0)
    assert list(evaluate(rule, INDEX)) == [0, 3]


class _CountingIndex:
    """Wraps an index, records which methods the evaluator calls."""

    def __init__(self, inner: MemoryBitmapIndex) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def universe(self) -> AbstractBitMap:
        self.calls.append("universe")
        return self.inner.universe()

    def equals(self, dim: str, value: Value) -> AbstractBitMap:
        self.calls.append("equals")
        return self.inner.equals(dim, value)

    def present(self, dim: str) -> AbstractBitMap:
        self.calls.append("present")
        return self.inner.present(dim)

    def contains(self, dim: str, value: str) -> AbstractBitMap:
        self.calls.append("contains")
        return self.inner.contains(dim, value)

    def range(
        self, dim: str, low: float | None, high: float | None, li: bool, hi: bool
    ) -> AbstractBitMap:
        self.calls.append("range")
        return self.inner.range(dim, low, high, li, hi)

    def segment(self, name: str) -> AbstractBitMap:
        self.calls.append("segment")
        return self.inner.segment(name)


def test_numbers_use_range_and_and_not_avoids_the_universe() -> None:
    index = _CountingIndex(INDEX)
    assert count(parse('age = 20 and country != "CA"'), index) == 1
    assert index.calls == ["range", "equals"]
    index.calls.clear()
    assert list(evaluate(parse("age in (18, 20) and not genres is missing"), index)) == [0]
    assert "universe" not in index.calls


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ({"age": "30"}, "row 0: age = '30' is not a number"),
        ({"age": True}, "is not a number"),
        ({"age": float("nan")}, "is not a finite number"),
        ({"country": 3}, "row 0: country = 3 is not a string"),
        ({"premium": 1}, "is not true/false"),
        ({"genres": "scifi"}, "is not a set of strings"),
        ({"genres": {1}}, "is not a set of strings"),
    ],
)
def test_from_rows_rejects_wrongly_typed_values(row: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidValue, match=fragment):
        MemoryBitmapIndex.from_rows([row], REG)


def test_empty_index() -> None:
    index = MemoryBitmapIndex.from_rows([], REG)
    assert count(parse('not country = "US"'), index) == 0
    assert len(evaluate(parse("age is missing"), index)) == 0


NUMS = st.one_of(st.integers(-50, 50), st.sampled_from([-0.5, 0.25, 2.5, 1e9, -1e9]))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), NUMS), max_size=80),
    low=st.one_of(st.none(), NUMS),
    high=st.one_of(st.none(), NUMS),
    low_inc=st.booleans(),
    high_inc=st.booleans(),
)
def test_bit_sliced_ranges_match_brute_force(
    values: list[float | None],
    low: float | None,
    high: float | None,
    low_inc: bool,
    high_inc: bool,
) -> None:
    ords = [i for i, v in enumerate(values) if v is not None]
    nums = [float(v) for v in values if v is not None]

    def inside(v: float) -> bool:
        above = low is None or (v >= low if low_inc else v > low)
        below = high is None or (v <= high if high_inc else v < high)
        return above and below

    expected = [i for i, v in enumerate(values) if v is not None and inside(v)]
    if not ords:
        return
    bsi = BitSlicedNumbers.build(ords, nums)
    assert list(bsi.between(low, high, low_inc, high_inc)) == expected
    for c in range(-1, len(bsi.values) + 1):
        rank_le = [i for i, v in zip(ords, nums, strict=True) if list(bsi.values).index(v) <= c]
        assert list(bsi.rank_le(c)) == rank_le


def test_bit_slices_are_logarithmic_in_distinct_values() -> None:
    bsi = BitSlicedNumbers.build(list(range(1000)), [float(i % 300) for i in range(1000)])
    assert len(bsi.slices) == 9  # ceil(log2(300))
    assert all(isinstance(s, FrozenBitMap) for s in bsi.slices)


def test_from_arrow_matches_from_rows() -> None:
    table = pa.table(
        {
            "country": pa.array([r.get("country") for r in ROWS], pa.string()),
            "age": pa.array([r.get("age") for r in ROWS], pa.float64()),
            "premium": pa.array([r.get("premium") for r in ROWS], pa.bool_()),
            "genres": pa.array(
                [sorted(r["genres"]) if "genres" in r else None for r in ROWS],
                pa.list_(pa.string()),
            ),
            "__segments__": pa.array([["s"], None, [], None, None], pa.list_(pa.string())),
            "ignored": pa.array([1, 2, 3, 4, 5]),
        }
    )
    columnar = MemoryBitmapIndex.from_arrow(table, REG)
    for text in (
        'country != "US"',
        "age between 18 and 20",
        "premium = false",
        'genres has any ("drama")',
        "genres is missing",
        'segment("s")',
    ):
        assert list(evaluate(parse(text), columnar)) == list(evaluate(parse(text), INDEX)), text


@pytest.mark.parametrize(
    ("column", "fragment"),
    [
        ({"age": pa.array(["1"])}, "column age is string, not a number"),
        ({"age": pa.array([float("nan")])}, "column age holds NaN/inf"),
        ({"genres": pa.array(["a"])}, "not list<string>"),
        ({"country": pa.array([1])}, "column country is int64, not category"),
        ({"premium": pa.array(["true"])}, "not bool"),
    ],
)
def test_from_arrow_rejects_wrong_column_types(column: dict[str, pa.Array], fragment: str) -> None:
    with pytest.raises(InvalidValue, match=fragment):
        MemoryBitmapIndex.from_arrow(pa.table(column), REG)
