"""Round trips text ↔ AST ↔ JSON on arbitrary ASTs, the canonical text, and JSON-form errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adtarget.errors import RuleSyntaxError
from adtarget.rules.ast import (
    KEYWORDS,
    MAX_DEPTH,
    MAX_INT,
    And,
    Between,
    Compare,
    HasAll,
    HasAny,
    InList,
    IsMissing,
    Not,
    Or,
    Rule,
    SegmentRef,
)
from adtarget.rules.format import from_json, quote, to_json, to_text
from adtarget.rules.parse import parse

DIMS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True).filter(
    lambda s: s.lower() not in KEYWORDS
)
NUMBERS = st.one_of(
    st.integers(min_value=-MAX_INT, max_value=MAX_INT),
    st.floats(allow_nan=False, allow_infinity=False),
)
VALUES = st.one_of(st.text(max_size=12), NUMBERS, st.booleans())
VALUE_LISTS = st.lists(VALUES, max_size=4).map(tuple)

ANY_LEAF: st.SearchStrategy[Rule] = st.one_of(
    st.builds(Compare, DIMS, st.sampled_from(["=", "!="]), VALUES),
    st.builds(Compare, DIMS, st.sampled_from(["<", "<=", ">", ">="]), NUMBERS),
    st.builds(Between, DIMS, NUMBERS, NUMBERS),
    st.builds(InList, DIMS, VALUE_LISTS, st.booleans()),
    st.builds(HasAny, DIMS, VALUE_LISTS),
    st.builds(HasAll, DIMS, VALUE_LISTS),
    st.builds(IsMissing, DIMS, st.booleans()),
    st.builds(SegmentRef, st.text(max_size=12)),
)
ANY_RULE: st.SearchStrategy[Rule] = st.recursive(
    ANY_LEAF,
    lambda kids: st.one_of(
        st.lists(kids, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(kids, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        kids.map(Not),
    ),
    max_leaves=12,
)


def _strict(rule: Rule) -> str:
    """Type-exact fingerprint (``1 == True == 1.0`` in Python, not in JSON)."""
    return json.dumps(to_json(rule), sort_keys=True)


@settings(max_examples=200, deadline=None)
@given(ANY_RULE)
def test_text_round_trip(rule: Rule) -> None:
    text = to_text(rule)
    again = parse(text)
    assert again == rule
    assert _strict(again) == _strict(rule)
    assert to_text(again) == text


@settings(max_examples=200, deadline=None)
@given(ANY_RULE)
def test_json_round_trip_through_real_json(rule: Rule) -> None:
    obj = json.loads(json.dumps(to_json(rule)))
    again = from_json(obj)
    assert again == rule
    assert _strict(again) == _strict(rule)


@given(st.text(max_size=30))
def test_any_string_survives_quoting(s: str) -> None:
    assert parse(f"d = {quote(s)}") == Compare("d", "=", s)


def test_canonical_text() -> None:
    rule = parse(
        "NOT (a = 1 OR b = 'x') AND (c IN (1,2) AND d has ANY ('y')) or "
        "e between 1 and 2.5 and f is not missing and segment('s')"
    )
    assert to_text(rule) == (
        'not (a = 1 or b = "x") and (c in (1, 2) and d has any ("y")) or '
        'e between 1 and 2.5 and f is not missing and segment("s")'
    )
    assert to_text(Or((Or((IsMissing("a"), IsMissing("b"))), IsMissing("c")))) == (
        "(a is missing or b is missing) or c is missing"
    )


def test_positions_do_not_affect_equality_or_hash() -> None:
    a = parse("   x = 1")
    b = Compare("x", "=", 1)
    assert a.column == 4 and b.column is None
    assert a == b and hash(a) == hash(b)
    assert len({parse("x = 1 and y = 2"), parse("x=1   and y=2")}) == 1


def test_json_form() -> None:
    rule = parse("a != 'x' and not (n between 1 and 2 or g has all ('p')) and segment('s')")
    assert to_json(rule) == {
        "op": "and",
        "args": [
            {"op": "!=", "dim": "a", "value": "x"},
            {
                "op": "not",
                "arg": {
                    "op": "or",
                    "args": [
                        {"op": "between", "dim": "n", "low": 1, "high": 2},
                        {"op": "has all", "dim": "g", "values": ["p"]},
                    ],
                },
            },
            {"op": "segment", "name": "s"},
        ],
    }


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ([], "expected a rule object but found list at $"),
        ({"op": "xor", "args": []}, "unknown rule op 'xor'"),
        ({"dim": "a"}, "unknown rule op None"),
        ({"op": "and", "args": [{"op": "is missing", "dim": "a"}]}, "at least two rules"),
        ({"op": "=", "dim": "a"}, "missing keys ['value'] for op '='"),
        ({"op": "=", "dim": "a", "value": 1, "x": 2}, "unexpected keys ['x']"),
        ({"op": "=", "dim": "a", "value": None}, "expected a string, finite number"),
        ({"op": "=", "dim": "a", "value": [1]}, "at $.value"),
        ({"op": "<", "dim": "a", "value": "3"}, "expected a finite number but found '3'"),
        ({"op": "<", "dim": "a", "value": True}, "expected a finite number but found True"),
        ({"op": "between", "dim": "a", "low": 1, "high": float("inf")}, "at $.high"),
        ({"op": "in", "dim": "a", "values": "US"}, "expected a list of values"),
        ({"op": "in", "dim": 5, "values": []}, "expected a string but found 5 at $.dim"),
        (
            {"op": "or", "args": [{"op": "segment", "name": "s"}, {"op": "not", "arg": 3}]},
            "at $.args[1].arg",
        ),
        ({"op": "has any", "dim": "g", "values": ["a", {}]}, "at $.values[1]"),
        ({"op": "=", "dim": "a", "value": 2**64}, "but found 18446744073709551616 at $.value"),
    ],
)
def test_from_json_errors_name_the_path(obj: Any, fragment: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        from_json(obj)
    assert fragment in info.value.message


def test_from_json_refuses_hostile_depth() -> None:
    obj: dict[str, Any] = {"op": "is missing", "dim": "a"}
    for _ in range(10_000):
        obj = {"op": "not", "arg": obj}
    with pytest.raises(RuleSyntaxError, match=f"more than {MAX_DEPTH} levels"):
        from_json(obj)
