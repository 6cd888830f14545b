"""Per-user evaluation: the pinned semantics, compiled == interpreted, and bad-typed data."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adtarget.errors import RuleValidationError
from adtarget.rules.ast import MAX_EXPANDED_DEPTH, HasAll, HasAny, InList, IsMissing, Not, Rule
from adtarget.rules.eval_python import _interpret, compile_rule, is_missing, matches
from adtarget.rules.parse import parse

from .strategies import RULES, USERS

US_ADULT = {"country": "US", "age": 30, "genres": frozenset({"scifi", "drama"}), "premium": True}
NOBODY: dict[str, Any] = {}
NULLS = {"country": None, "age": None, "genres": None, "premium": None}
EMPTY_SET: dict[str, Any] = {"genres": frozenset(), "tags": []}


def both(text: str, features: dict[str, Any]) -> bool:
    rule = parse(text)
    compiled = compile_rule(rule)(features)
    assert compiled == matches(rule, features), text
    return compiled


@pytest.mark.parametrize(
    ("text", "user", "expected"),
    [
        ('country = "US"', US_ADULT, True),
        ('country = "US"', NOBODY, False),
        ('country != "US"', NOBODY, True),  # not (missing = "US")
        ('country != "US"', NULLS, True),
        ('country != "US"', US_ADULT, False),
        ('country in ("CA", "US")', US_ADULT, True),
        ('country not in ("CA")', NOBODY, True),
        ('country not in ("US")', US_ADULT, False),
        ("age = 30.0", US_ADULT, True),  # numbers compare numerically
        ("age in (29, 30.0)", US_ADULT, True),
        ("age < 30", US_ADULT, False),
        ("age <= 30", US_ADULT, True),
        ("age > 29.5", US_ADULT, True),
        ("age >= 31", US_ADULT, False),
        ("age < 100", NOBODY, False),
        ("not age < 100", NOBODY, True),
        ("age between 30 and 34", US_ADULT, True),  # inclusive
        ("age between 18 and 30", US_ADULT, True),
        ("age between 31 and 40", US_ADULT, False),
        ("age between 0 and 100", NULLS, False),
        ("premium = true", US_ADULT, True),
        ("premium = false", US_ADULT, False),
        ("premium != false", NOBODY, True),
        ('genres has any ("news", "scifi")', US_ADULT, True),
        ('genres has any ("news")', US_ADULT, False),
        ('genres has all ("scifi", "drama")', US_ADULT, True),
        ('genres has all ("scifi", "news")', US_ADULT, False),
        ('genres has any ("scifi")', EMPTY_SET, False),
        ('genres has all ("scifi")', NOBODY, False),
        ('not genres has any ("scifi")', NOBODY, True),
        ("genres is missing", EMPTY_SET, True),  # empty set counts as missing
        ("tags is missing", EMPTY_SET, True),
        ("genres is missing", NULLS, True),
        ("genres is not missing", US_ADULT, True),
        ("country is missing", {"country": ""}, False),  # "" is a value, not missing
        ("age is missing", {"age": 0}, False),
        ("premium is missing", {"premium": False}, False),
        ('segment("fans")', {"__segments__": frozenset({"fans"})}, True),
        ('segment("fans")', {"__segments__": ["other"]}, False),
        ('segment("fans")', NOBODY, False),
        ('not segment("fans")', NOBODY, True),
        ('country = "US" and age between 18 and 34 or premium = false', US_ADULT, True),
        ('not (country = "US" and age > 40)', US_ADULT, True),
    ],
)
def test_semantics(text: str, user: dict[str, Any], expected: bool) -> None:
    assert both(text, user) is expected


def test_sets_may_be_any_iterable_of_str() -> None:
    for genres in (["scifi"], ("scifi",), {"scifi"}, frozenset({"scifi"})):
        assert both('genres has any ("scifi")', {"genres": genres})
        assert both('genres has all ("scifi")', {"genres": genres})


@pytest.mark.parametrize(
    ("text", "user", "expected"),
    [
        ("age < 30", {"age": "young"}, False),
        ("not age < 30", {"age": "young"}, True),
        ("age between 1 and 2 or country = 'US'", {"age": "x", "country": "US"}, True),
        ('country in ("US")', {"country": ["US"]}, False),  # unhashable
        ('country not in ("US")', {"country": ["US"]}, True),
        ('genres has any ("a")', {"genres": 5}, False),
        ('genres has all ("a")', {"genres": 5}, False),
    ],
)
def test_wrongly_typed_values_never_satisfy_a_comparison(
    text: str, user: dict[str, Any], expected: bool
) -> None:
    assert both(text, user) is expected


def test_empty_lists_from_unvalidated_asts_match_nothing() -> None:
    user = {"a": 1, "g": frozenset({"x"})}
    cases: list[tuple[Rule, bool]] = [
        (InList("a", ()), False),
        (InList("a", (), negated=True), True),
        (HasAny("g", ()), False),
        (HasAll("g", ()), False),
    ]
    for rule, expected in cases:
        assert compile_rule(rule)(user) is expected
        assert matches(rule, user) is expected


def test_values_are_constants_not_source() -> None:
    rule = parse("""d = "x') or True or ('" """)
    assert compile_rule(rule)({"d": "y"}) is False
    assert compile_rule(rule)({"d": "x') or True or ('"}) is True


def test_is_missing_helper() -> None:
    assert is_missing(None) and is_missing(frozenset()) and is_missing([])
    assert not is_missing("") and not is_missing(0) and not is_missing(False)


def test_compile_refuses_absurd_depth() -> None:
    rule: Rule = IsMissing("a")
    for _ in range(MAX_EXPANDED_DEPTH + 1):
        rule = Not(rule)
    with pytest.raises(RuleValidationError, match="nested too deeply to compile"):
        compile_rule(rule)


@settings(max_examples=150, deadline=None)
@given(rule=RULES, users=st.lists(USERS, max_size=10))
def test_compiled_equals_interpreted(rule: Rule, users: list[dict[str, Any]]) -> None:
    fn = compile_rule(rule)
    assert [fn(u) for u in users] == [_interpret(rule, u) for u in users]
