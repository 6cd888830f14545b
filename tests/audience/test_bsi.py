"""Numbers as bitmaps: rank bounds at the edges, bucketed range encoding + BSI vs brute force."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import AbstractBitMap

from adtarget.audience import bsi


def _index(values: list[float]) -> tuple[list[float], bsi.NumberBitmaps, list[AbstractBitMap]]:
    arr = np.asarray(values, dtype=np.float64)
    distinct, ranks = bsi.encode_ranks(arr)
    ords = np.arange(len(values), dtype=np.uint32)
    bitmaps, meta = bsi.build_number(ords, ranks, len(distinct))
    nb = bsi.NumberBitmaps(
        bitmaps.__getitem__,
        int(meta["bits"]),  # type: ignore[call-overload]
        list(meta["buckets"]),
        len(distinct),
    )  # type: ignore[call-overload]
    return distinct.tolist(), nb, bitmaps


def _query(
    distinct: list[float],
    nb: bsi.NumberBitmaps,
    lo: float | None,
    hi: float | None,
    li: bool,
    hi_inc: bool,
) -> set[int]:
    bounds = bsi.rank_bounds(distinct, lo, hi, li, hi_inc)
    return set() if bounds is None else set(nb.range(*bounds))


def _brute(
    values: list[float], lo: float | None, hi: float | None, li: bool, hi_inc: bool
) -> set[int]:
    out = set()
    for i, v in enumerate(values):
        ok_lo = lo is None or (v >= lo if li else v > lo)
        ok_hi = hi is None or (v <= hi if hi_inc else v < hi)
        if ok_lo and ok_hi:
            out.add(i)
    return out


def test_rank_bounds_edges() -> None:
    d = [1.0, 2.0, 3.0]
    assert bsi.rank_bounds(d, 1.0, 3.0) == (0, 2)
    assert bsi.rank_bounds(d, 1.0, 3.0, False, False) == (1, 1)
    assert bsi.rank_bounds(d, 3.0, None, False, True) is None
    assert bsi.rank_bounds(d, None, 1.0, True, False) is None
    assert bsi.rank_bounds(d, 0.5, 0.9) is None
    assert bsi.rank_bounds(d, 2.5, 99) == (2, 2)
    assert bsi.rank_bounds([], None, None) is None


def test_one_bucket_per_value_when_few_distinct() -> None:
    values = [float(v) for v in range(18, 81)] * 3
    distinct, nb, _ = _index(values)
    assert nb.starts == list(range(63))
    assert _query(distinct, nb, 18, 34, True, True) == _brute(values, 18, 34, True, True)
    assert _query(distinct, nb, 80, 80, True, True) == _brute(values, 80, 80, True, True)


def test_many_distinct_values_use_quantile_buckets() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=3000).round(3).tolist()
    distinct, nb, _ = _index(values)
    assert 1 < len(nb.starts) <= bsi.MAX_BUCKETS < len(distinct)
    for lo, hi in [(-0.5, 0.5), (None, 0.0), (0.1234, None), (-9, 9), (0.0, 0.0)]:
        for li in (True, False):
            for hinc in (True, False):
                assert _query(distinct, nb, lo, hi, li, hinc) == _brute(values, lo, hi, li, hinc)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.integers(-40, 200).map(float) | st.sampled_from([0.5, -2.25, 1e9]),
        min_size=1,
        max_size=300,
    ),
    lo=st.none() | st.integers(-50, 210).map(float),
    hi=st.none() | st.integers(-50, 210).map(float),
    li=st.booleans(),
    hi_inc=st.booleans(),
)
def test_ranges_match_brute_force(
    values: list[float], lo: float | None, hi: float | None, li: bool, hi_inc: bool
) -> None:
    distinct, nb, _ = _index(values)
    assert _query(distinct, nb, lo, hi, li, hi_inc) == _brute(values, lo, hi, li, hi_inc)
