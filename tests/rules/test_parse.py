"""Parser: every production, precedence, keywords, quoting, and each error with its position."""

from __future__ import annotations

import pytest

from adtarget.errors import RuleSyntaxError
from adtarget.rules.ast import (
    MAX_DEPTH,
    MAX_LIST_VALUES,
    MAX_NODES,
    MAX_TEXT_LENGTH,
    And,
    Between,
    Compare,
    HasAll,
    HasAny,
    InList,
    IsMissing,
    Not,
    Or,
    SegmentRef,
)
from adtarget.rules.parse import parse

A = Compare("a", "=", 1)
B = Compare("b", "=", 2)
C = Compare("c", "=", 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('country = "US"', Compare("country", "=", "US")),
        ("country != 'US'", Compare("country", "!=", "US")),
        ("age < 18", Compare("age", "<", 18)),
        ("age <= 18.5", Compare("age", "<=", 18.5)),
        ("age > -3", Compare("age", ">", -3)),
        ("age >= 1e3", Compare("age", ">=", 1000.0)),
        ("premium = true", Compare("premium", "=", True)),
        ("premium != FALSE", Compare("premium", "!=", False)),
        ("age between 18 and 34", Between("age", 18, 34)),
        ('country in ("US", "CA")', InList("country", ("US", "CA"))),
        ("country not in ('US')", InList("country", ("US",), negated=True)),
        ("n in (1, 2.5, true)", InList("n", (1, 2.5, True))),
        ('genres has any ("scifi", "drama")', HasAny("genres", ("scifi", "drama"))),
        ('genres has all ("scifi")', HasAll("genres", ("scifi",))),
        ("country is missing", IsMissing("country")),
        ("country is not missing", IsMissing("country", negated=True)),
        ('segment("sports_fans")', SegmentRef("sports_fans")),
        ("geo.country_code = 'US'", Compare("geo.country_code", "=", "US")),
        ("_x1 = 1", Compare("_x1", "=", 1)),
        ("not a = 1", Not(A)),
        ("(a = 1)", A),
        ("country in ()", InList("country", ())),
    ],
)
def test_every_production(text: str, expected: object) -> None:
    assert parse(text) == expected


def test_64_bit_integers_are_the_limit() -> None:
    assert parse("a = -9223372036854775807") == Compare("a", "=", -(2**63 - 1))
    assert parse("a = 9223372036854775807") == Compare("a", "=", 2**63 - 1)


def test_int_and_float_literals_keep_their_type() -> None:
    assert type(parse("a = 3").value) is int  # type: ignore[union-attr]
    assert type(parse("a = 3.0").value) is float  # type: ignore[union-attr]
    assert type(parse("a = 3e2").value) is float  # type: ignore[union-attr]


def test_precedence_not_binds_tighter_than_and_tighter_than_or() -> None:
    assert parse("a = 1 or b = 2 and c = 3") == Or((A, And((B, C))))
    assert parse("a = 1 and b = 2 or c = 3") == Or((And((A, B)), C))
    assert parse("not a = 1 and b = 2") == And((Not(A), B))
    assert parse("not (a = 1 and b = 2)") == Not(And((A, B)))
    assert parse("not not a = 1") == Not(Not(A))
    assert parse("(a = 1 or b = 2) and c = 3") == And((Or((A, B)), C))


def test_same_operator_chains_are_flat_but_parentheses_nest() -> None:
    assert parse("a = 1 and b = 2 and c = 3") == And((A, B, C))
    assert parse("(a = 1 and b = 2) and c = 3") == And((And((A, B)), C))
    assert parse("a = 1 or b = 2 or c = 3") == Or((A, B, C))


def test_between_and_is_not_a_boolean_and() -> None:
    assert parse("age between 1 and 2 and a = 1") == And((Between("age", 1, 2), A))


def test_keywords_are_case_insensitive_dimensions_are_not_lowered() -> None:
    rule = parse("NOT Age BETWEEN 1 AND 2 Or Country NOT IN ('x') aNd G HAS ANY ('y')")
    assert rule == Or(
        (
            Not(Between("Age", 1, 2)),
            And((InList("Country", ("x",), negated=True), HasAny("G", ("y",)))),
        )
    )
    assert parse("x IS NOT MISSING") == IsMissing("x", negated=True)
    assert parse("SEGMENT('s')") == SegmentRef("s")
    assert parse("p = TRUE") == Compare("p", "=", True)


def test_quoting_and_escapes() -> None:
    assert parse(r'd = "say \"hi\""').value == 'say "hi"'  # type: ignore[union-attr]
    assert parse(r"d = 'it\'s'").value == "it's"  # type: ignore[union-attr]
    assert parse('d = "it\'s"').value == "it's"  # type: ignore[union-attr]
    assert parse(r'd = "a\\b\nc\td\u00e9"').value == "a\\b\nc\td\u00e9"  # type: ignore[union-attr]
    assert parse('d = "é 東京 🎬"').value == "é 東京 🎬"  # type: ignore[union-attr]
    assert parse('d = ""').value == ""  # type: ignore[union-attr]
    assert parse('d = "and or not"').value == "and or not"  # type: ignore[union-attr]


def test_whitespace_and_newlines_are_free_and_positions_are_recorded() -> None:
    rule = parse('  a = 1\n and\n\tcountry in ("US")')
    assert isinstance(rule, And)
    first, second = rule.children
    assert (first.line, first.column) == (1, 3)
    assert (second.line, second.column) == (3, 2)
    assert isinstance(second, InList)
    assert second.value_columns == (14,)


def _error(text: str) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("", 1, "rule is empty"),
        ("   ", 1, "rule is empty"),
        ("a = 1 b = 2", 7, "unexpected 'b' (expected 'and', 'or' or end of rule)"),
        ("a = 1 and", 10, "expected a dimension name"),
        ("and = 1", 1, "expected a dimension name, 'not', 'segment(...)' or '(' but found 'and'"),
        ("(a = 1", 7, "expected ')' to close '(' from column 1"),
        ("a = 1)", 6, "unexpected ')'"),
        ("age betwen 1 and 2", 5, "(did you mean 'between'?)"),
        ("age == 3", 6, "(use a single '=')"),
        ("country = US", 11, 'strings need quotes: "US"'),
        ("age < 'x'", 7, "expected a number after '<'"),
        ("age between 1 or 2", 15, "expected 'and' in 'between'"),
        ("age between 'a' and 2", 13, "expected a number after 'between'"),
        ("age between 1 and x", 19, "expected a number after 'between ... and'"),
        ("c in 'US'", 6, "expected '(' after 'in'"),
        ("c in ('US' 'CA')", 12, "expected ',' or ')' in the list"),
        ("c in ('US',", 12, "expected a value (string, number, true or false) in the list"),
        ("g has some ('x')", 7, "expected 'any' or 'all' after 'has'"),
        ("c is absent", 6, "expected 'missing' after 'is'"),
        ("c not ('x')", 3, "expected an operator"),
        ("segment(sports)", 9, "expected a quoted segment name"),
        ('segment("s"', 12, "expected ')' after the segment name"),
        ('a = "abc', 5, "unterminated string"),
        (r'a = "a\qb"', 7, "invalid escape '\\q'"),
        (r'a = "\u12"', 6, "invalid \\u escape"),
        ("a = 1.2.3", 5, "invalid number '1.2.3'"),
        ("a = 12abc", 5, "invalid number '12abc'"),
        ("a = 1e999", 5, "out of range"),
        ("a = 9223372036854775808", 5, "number '9223372036854775808' is out of range"),
        ("a = " + "1" * 5000, 5, "number is too long"),
        ("a # 1", 3, "unexpected character '#'"),
        ("a", 2, "expected an operator (=, !=, <, <=, >, >=, between, in, not in, has any"),
    ],
)
def test_each_error_names_token_and_column(text: str, column: int, fragment: str) -> None:
    err = _error(text)
    assert fragment in err.message
    assert err.column == column
    assert err.line == 1
    assert err.message.endswith(f"at column {column}") or f"at column {column} (" in err.message
    assert err.to_dict()["code"] == "rule_syntax"


def test_error_on_a_later_line_reports_line_and_column() -> None:
    err = _error("a = 1\nand b ?= 2")
    assert (err.line, err.column) == (2, 7)
    assert "at line 2, column 7" in err.message


def test_non_text_is_rejected() -> None:
    with pytest.raises(RuleSyntaxError, match="rule must be text"):
        parse(123)  # type: ignore[arg-type]


def test_hostile_nesting_is_refused_before_the_stack_is() -> None:
    err = _error("(" * 10_000 + "a = 1" + ")" * 10_000)
    assert "nested too deeply" in err.message
    assert err.column == MAX_DEPTH + 1
    assert "nested too deeply" in _error("not " * 10_000 + "a = 1").message
    ok = "(" * (MAX_DEPTH - 1) + "a = 1" + ")" * (MAX_DEPTH - 1)
    assert parse(ok) == A


def test_hostile_size_is_refused() -> None:
    assert "too large" in _error(" and ".join(["a = 1"] * (MAX_NODES + 1))).message
    many = ", ".join(["1"] * (MAX_LIST_VALUES + 1))
    assert f"more than {MAX_LIST_VALUES} values" in _error(f"a in ({many})").message
    with pytest.raises(RuleSyntaxError, match="longer than"):
        parse("a = 1" + " " * MAX_TEXT_LENGTH)
