"""The boolean-expression index returns exactly what evaluating every rule returns."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adtarget.decision.dnf import MAX_CONJUNCTIONS, to_conjunctions
from adtarget.decision.index import LineItemIndex, scan_match_ids
from adtarget.rules.ast import And, Between, Compare, HasAny, InList, IsMissing, Not, Or, Rule
from adtarget.rules.eval_python import compile_rule

from .strategies import line_item, rules, users


def _check(index: LineItemIndex, items: list[Any], user: dict[str, Any]) -> None:
    matchers = [compile_rule(it.rule) if it.rule is not None else (lambda _f: True) for it in items]
    assert index.match_ids(user) == scan_match_ids(items, user, matchers)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rules(), min_size=1, max_size=12), st.lists(users(), min_size=1, max_size=8))
def test_index_equals_per_user_evaluator(
    rule_list: list[Rule], user_list: list[dict[str, Any]]
) -> None:
    items = [line_item(i, r) for i, r in enumerate(rule_list)]
    index = LineItemIndex(items)
    for user in user_list:
        _check(index, items, user)


def test_match_positions_iterate_in_rank_order() -> None:
    items = [
        line_item(1, None, priority=2, bid_cpm=5.0),
        line_item(2, None, priority=1, bid_cpm=1.0),
        line_item(3, None, priority=1, bid_cpm=9.0),
        line_item(4, None, priority=1, bid_cpm=9.0),
    ]
    index = LineItemIndex(items)
    assert [index.items[p].id for p in index.match({})] == [3, 4, 2, 1]


def test_missing_value_semantics() -> None:
    items = [
        line_item(1, Compare("country", "!=", "US")),
        line_item(2, Not(Compare("age", "<", 30))),
        line_item(3, Compare("age", ">=", 30)),
        line_item(4, IsMissing("genres")),
        line_item(5, InList("country", ("US", "CA"), negated=True)),
    ]
    index = LineItemIndex(items)
    assert index.match_ids({}) == {1, 2, 4, 5}
    assert index.match_ids({"genres": frozenset()}) == {1, 2, 4, 5}
    assert index.match_ids({"country": "US", "age": 30, "genres": {"x"}}) == {2, 3}
    assert index.match_ids({"age": 29.5}) == {1, 4, 5}


def test_rules_over_the_dnf_cap_are_verified_directly() -> None:
    wide = And(
        tuple(Or((Compare(f"d{i}", "=", "a"), Compare(f"d{i}", "=", "b"))) for i in range(7))
    )
    assert MAX_CONJUNCTIONS < 2**7
    items = [line_item(1, wide), line_item(2, HasAny("g", ("x",)))]
    index = LineItemIndex(items)
    user = {f"d{i}": "b" for i in range(7)}
    assert index.match_ids(user) == {1}
    assert index.match_ids({**user, "d3": "c", "g": ["x"]}) == {2}


def test_multi_conjunction_rule_matches_once() -> None:
    rule = Or((Between("age", 10, 20), Between("age", 15, 30), Compare("country", "=", "US")))
    assert len(to_conjunctions(rule)) == 3
    index = LineItemIndex([line_item(1, rule), line_item(2, None)])
    assert index.match_ids({"age": 16, "country": "US"}) == {1, 2}
    assert index.match_ids({"age": 31}) == {2}


def test_empty_index_matches_nothing() -> None:
    assert LineItemIndex([]).match_ids({"country": "US"}) == set()


def test_rules_with_more_conjunctions_than_layers_are_verified_directly() -> None:
    from adtarget.decision.index import LAYERS_MAX

    # 16 conjunctions: within the DNF cap, above the layer cap
    wide = And(
        tuple(Or((Compare(f"d{i}", "=", "a"), Compare(f"d{i}", "=", "b"))) for i in range(4))
    )
    assert LAYERS_MAX < len(to_conjunctions(wide)) <= MAX_CONJUNCTIONS
    narrow = Or((Compare("d0", "=", "a"), Compare("d1", "=", "z")))
    items = [line_item(1, wide), line_item(2, narrow), line_item(3, Compare("d0", "=", "b"))]
    index = LineItemIndex(items)
    for user in (
        {f"d{i}": "b" for i in range(4)},
        {"d0": "a", "d1": "a", "d2": "b", "d3": "a"},
        {"d0": "a"},
        {"d1": "z", "d0": "b"},
        {},
    ):
        _check(index, items, user)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 3000), max_size=200))
def test_matches_iterate_ascending_and_count(positions: set[int]) -> None:
    from pyroaring import BitMap

    from adtarget.decision.bits import Matches, to_bits

    bits = to_bits(BitMap(positions))
    m = Matches(bits)
    assert list(m) == sorted(positions) == m.tolist()
    assert len(m) == len(positions) and bool(m) == bool(positions)
    assert all(p in m for p in positions) and -1 not in m and 3001 not in m
