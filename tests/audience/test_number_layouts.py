"""Every number layout (range-encoded, bucketed equality, bit-sliced) answers ranges exactly.

Brute force over the values is the oracle: ints and floats, negatives, many distinct values,
bounds inclusive and exclusive, on a value, between values and outside all of them; missing
users are never in a range. On disk, the snapshot's index agrees with the per-user evaluator
for generated rules under each layout.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.audience.conftest import build, population
from tests.rules.strategies import RULES

from adtarget.audience import bsi, numbers
from adtarget.audience.sizing import count_rule
from adtarget.audience.store import SnapshotStore
from adtarget.errors import InvalidValue
from adtarget.rules.ast import Rule
from adtarget.rules.eval_bitmap import evaluate
from adtarget.rules.eval_python import compile_rule
from adtarget.rules.format import from_json, to_text

LAYOUTS = ["range", "buckets", "bsi"]


def _reader(values: list[float | None], layout: str, max_buckets: int) -> Any:
    present = [i for i, v in enumerate(values) if v is not None]
    arr = np.asarray([values[i] for i in present], dtype=np.float64)
    distinct, ranks = bsi.encode_ranks(arr)
    ords = np.asarray(present, dtype=np.uint32)
    bitmaps, meta = numbers.build(ords, ranks, len(distinct), layout, max_buckets=max_buckets)
    meta["num_values"] = len(distinct)
    return distinct.tolist(), numbers.reader(bitmaps.__getitem__, meta, len(bitmaps))


def _brute(
    values: list[float | None], lo: float | None, hi: float | None, li: bool, hinc: bool
) -> set[int]:
    out = set()
    for i, v in enumerate(values):
        if v is None:
            continue
        if (lo is None or (v >= lo if li else v > lo)) and (
            hi is None or (v <= hi if hinc else v < hi)
        ):
            out.add(i)
    return out


def _query(distinct: list[float], r: Any, lo: Any, hi: Any, li: bool, hinc: bool) -> set[int]:
    bounds = bsi.rank_bounds(distinct, lo, hi, li, hinc)
    return set() if bounds is None else set(r.range(*bounds))


NUMBERS = (
    st.integers(-60, 60).map(float)
    | st.integers(-3000, 3000).map(lambda x: x / 100)
    | st.sampled_from([-0.0, 1e15, -1e15, 0.1, 0.30000000000000004])
)


@settings(max_examples=120, deadline=None)
@given(
    values=st.lists(st.none() | NUMBERS, min_size=1, max_size=400),
    lo=st.none() | NUMBERS,
    hi=st.none() | NUMBERS,
    li=st.booleans(),
    hinc=st.booleans(),
    layout=st.sampled_from(LAYOUTS),
    max_buckets=st.integers(1, 9),
)
def test_every_layout_matches_brute_force(
    values: list[float | None],
    lo: float | None,
    hi: float | None,
    li: bool,
    hinc: bool,
    layout: str,
    max_buckets: int,
) -> None:
    if all(v is None for v in values):
        values = [*values, 1.0]
    distinct, r = _reader(values, layout, max_buckets)
    assert _query(distinct, r, lo, hi, li, hinc) == _brute(values, lo, hi, li, hinc)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_high_cardinality_floats_at_every_bound(layout: str) -> None:
    rng = np.random.default_rng(3)
    values: list[float | None] = [
        None if rng.random() < 0.05 else float(round(rng.gamma(1.5, 12.0), 1)) for _ in range(4000)
    ]
    distinct, r = _reader(values, layout, 16)
    assert len(distinct) > 200
    probes = [distinct[0], distinct[7], distinct[len(distinct) // 2], distinct[-1], 3.05, -1.0]
    for lo in [None, *probes]:
        for hi in [None, *probes]:
            for li in (True, False):
                for hinc in (True, False):
                    assert _query(distinct, r, lo, hi, li, hinc) == _brute(
                        values, lo, hi, li, hinc
                    ), (lo, hi, li, hinc)


def test_layout_is_chosen_by_distinct_values() -> None:
    assert numbers.choose_layout(78) == "range"
    assert numbers.choose_layout(1000) == "buckets"
    assert numbers.choose_layout(10**6) == "bsi"


@pytest.mark.parametrize("layout", [None, *LAYOUTS])
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rules=st.lists(RULES, min_size=8, max_size=8))
def test_snapshot_layouts_agree_with_the_per_user_evaluator(
    tmp_path_factory: pytest.TempPathFactory, layout: str | None, rules: list[Rule]
) -> None:
    users = population(300, seed=11)
    store = SnapshotStore(tmp_path_factory.mktemp("layout") / "snapshots")
    snap = build(store, users, number_layout=layout)
    assert {d.layout for d in snap.dims.values() if d.type == "number"} == {layout or "range"}
    for rule in rules:
        fn = compile_rule(rule)
        expected = [i for i, u in enumerate(users) if fn(u)]
        assert list(evaluate(rule, snap.index)) == expected, to_text(rule)
        assert count_rule(rule, snap.index) == len(expected), to_text(rule)


def test_old_snapshots_without_a_layout_read_as_bit_sliced(tmp_path: Path) -> None:
    users = population(200, seed=2)
    snap = build(SnapshotStore(tmp_path / "s"), users, number_layout="bsi")
    meta = dict(snap.manifest["dims"]["age"])
    meta.pop("layout")
    assert isinstance(numbers.reader(snap.dims["age"].bitmap, meta, 3), bsi.NumberBitmaps)


def test_nan_is_never_a_bound() -> None:
    for bad in (math.nan, math.inf):
        with pytest.raises(InvalidValue):
            from_json({"op": "between", "dim": "age", "low": bad, "high": 3})


def test_buckets_take_a_tail_bucket_whole_and_remove_the_few_ranks_below() -> None:
    # 600 users on 0..9, then a tail of 200 values with one user each: the last of 4
    # equal-population buckets spans ~100 ranks
    values: list[float | None] = [float(i % 10) for i in range(600)] + [
        10.0 + i for i in range(200)
    ]
    distinct, r = _reader(values, "buckets", 4)
    assert isinstance(r, numbers.BucketedEquality)
    last = r.starts[-1]
    assert r.k - last > 50
    r.range(0, 0)  # no stored sizes here: the first range reads the cardinalities
    fetched: list[int] = []
    get = r._get
    r._get = lambda i: fetched.append(i) or get(i)
    lo = distinct[last + 2]
    assert _query(distinct, r, lo, None, True, True) == _brute(values, lo, None, True, True)
    assert len([i for i in fetched if i < r.k]) == 2  # two ranks removed, not ~100 unioned
