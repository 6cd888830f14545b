"""Validation against the registry, segment references, cycles, and hostile-size limits."""

from __future__ import annotations

import pytest

from adtarget.errors import RuleValidationError
from adtarget.rules.ast import (
    MAX_DEPTH,
    MAX_EXPANDED_NODES,
    MAX_NODES,
    And,
    Compare,
    HasAny,
    InList,
    IsMissing,
    Not,
    Or,
    Rule,
    SegmentRef,
)
from adtarget.rules.format import from_json
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec, make_registry
from adtarget.rules.validate import expand_segments, validate

REG = make_registry(
    [
        DimensionSpec("country", "category", frozenset({"US", "CA", "FR"})),
        DimensionSpec("device", "category"),
        DimensionSpec("age", "number"),
        DimensionSpec("premium", "bool"),
        DimensionSpec("genres", "set", frozenset({"scifi", "drama"})),
        DimensionSpec("tags", "set"),
    ]
)


def _error(text: str, **kw: object) -> RuleValidationError:
    with pytest.raises(RuleValidationError) as info:
        validate(parse(text), REG, **kw)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    "text",
    [
        'country in ("US", "CA") and age between 18 and 34 and genres has any ("scifi")',
        'country != "FR" or device = "anything" or premium = false',
        "age = 3 or age in (1, 2.5) or age != 4 or age < 1 or age >= 2.5",
        "premium in (true) and tags has all ('x', 'y')",
        "country is missing or genres is not missing or age is missing or premium is missing",
        "age between 3 and 3",
    ],
)
def test_valid_rules_pass(text: str) -> None:
    validate(parse(text), REG)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'contry = "US"',
            "unknown dimension 'contry' at column 1 (did you mean 'country'?)",
        ),
        ("AGE > 3", "unknown dimension 'AGE' at column 1 (did you mean 'age'?)"),
        ("zzz is missing", "unknown dimension 'zzz' at column 1"),
        (
            'age has any ("x")',
            "type mismatch: 'has any' needs a set dimension but 'age' is number at column 1",
        ),
        (
            'device has all ("x")',
            "type mismatch: 'has all' needs a set dimension but 'device' is category at "
            "column 1 (use 'in')",
        ),
        (
            "country > 3",
            "type mismatch: '>' needs a number dimension but 'country' is category at column 1",
        ),
        (
            "age = 1 or country between 1 and 2",
            "type mismatch: 'between' needs a number dimension but 'country' is category at "
            "column 12",
        ),
        (
            "country = 3",
            "type mismatch: value 3 for category dimension 'country' must be a string at column 11",
        ),
        (
            'age in (1, "2")',
            "type mismatch: value \"2\" for number dimension 'age' must be a number at column 12",
        ),
        (
            "age = true",
            "type mismatch: value true for number dimension 'age' must be a number at column 7",
        ),
        (
            "premium = 1",
            "type mismatch: value 1 for bool dimension 'premium' must be true or false at "
            "column 11",
        ),
        (
            'genres = "scifi"',
            "type mismatch: '=' does not apply to set dimension 'genres' at column 1 "
            "(use 'has any' or 'has all')",
        ),
        (
            'genres not in ("scifi")',
            "type mismatch: 'not in' does not apply to set dimension 'genres' at column 1 "
            "(use 'not genres has any (...)')",
        ),
        (
            'country in ("US", "Us")',
            "value \"Us\" is not allowed for dimension 'country' at column 19 (did you mean 'US'?)",
        ),
        (
            'genres in ("scifi")',
            "type mismatch: 'in' does not apply to set dimension 'genres' at column 1 "
            "(use 'has any')",
        ),
        (
            'genres has any ("scfi")',
            "value \"scfi\" is not allowed for dimension 'genres' at column 17 "
            "(did you mean 'scifi'?)",
        ),
        ("country in ()", "empty value list for 'in' on 'country' at column 1"),
        ("tags has any ()", "empty value list for 'has any' on 'tags' at column 1"),
        ("age between 5 and 1", "'between' bounds are reversed (5 > 1) for 'age' at column 1"),
    ],
)
def test_errors_name_token_and_column(text: str, message: str) -> None:
    err = _error(text)
    assert err.message == message
    assert err.code == "rule_invalid"


def test_error_on_a_later_line() -> None:
    err = _error('age > 1 and\n  contry = "US"')
    assert (err.line, err.column) == (2, 3)
    assert "at line 2, column 3" in err.message


def test_rules_from_json_have_no_position() -> None:
    rule = from_json({"op": "=", "dim": "contry", "value": "US"})
    with pytest.raises(RuleValidationError) as info:
        validate(rule, REG)
    assert info.value.message == "unknown dimension 'contry' (did you mean 'country'?)"
    assert (info.value.line, info.value.column) == (0, 0)


def test_size_and_depth_limits_for_programmatic_rules() -> None:
    deep: Rule = IsMissing("age")
    for _ in range(MAX_DEPTH + 1):
        deep = Not(deep)
    with pytest.raises(RuleValidationError, match="nested too deeply"):
        validate(deep, REG)
    wide = And(tuple(IsMissing("age") for _ in range(MAX_NODES + 1)))
    with pytest.raises(RuleValidationError, match="too large"):
        validate(wide, REG)
    big_list = InList("device", tuple(str(i) for i in range(20_000)))
    with pytest.raises(RuleValidationError, match="more than 10000 values"):
        validate(big_list, REG)


# -- segments -----------------------------------------------------------------------------------

SEGS: dict[str, Rule | None] = {
    "young": parse("age < 25"),
    "young_us": parse('segment("young") and country = "US"'),
    "uploaded": None,  # a list segment: membership only
}


def test_known_segments_validate_and_unknown_ones_suggest() -> None:
    validate(parse('segment("young_us") or segment("uploaded")'), REG, segments=SEGS)
    validate(parse('segment("anything")'), REG)  # no mapping given: names are not checked
    err = _error('age > 1 or segment("yung")', segments=SEGS)
    assert err.message == "unknown segment 'yung' at column 12 (did you mean 'young'?)"


def test_cycles_are_found_at_definition_time() -> None:
    segs = dict(SEGS)
    new = parse('segment("young_us") or segment("b")')
    segs["a"] = new
    segs["b"] = parse('device = "x" and segment("a")')
    with pytest.raises(RuleValidationError) as info:
        validate(new, REG, segments=segs)
    assert info.value.message == "segment cycle: b -> a -> b at column 24"
    segs["self"] = parse('segment("self")')
    with pytest.raises(RuleValidationError, match="segment cycle: self -> self"):
        validate(parse('segment("self")'), REG, segments=segs)


def test_expand_segments_inlines_rules_and_keeps_list_segments() -> None:
    rule = parse('segment("young_us") and not segment("uploaded")')
    out = expand_segments(rule, SEGS.get)
    assert out == And(
        (
            And((Compare("age", "<", 25), Compare("country", "=", "US"))),
            Not(SegmentRef("uploaded")),
        )
    )
    assert expand_segments(IsMissing("age"), SEGS.get) == IsMissing("age")


def test_expand_segments_refuses_exponential_blow_up() -> None:
    segs: dict[str, Rule | None] = {"s0": HasAny("tags", ("x",))}
    for i in range(1, 40):
        segs[f"s{i}"] = Or((SegmentRef(f"s{i - 1}"), SegmentRef(f"s{i - 1}")))
    with pytest.raises(RuleValidationError, match=f"more than {MAX_EXPANDED_NODES} nodes"):
        expand_segments(SegmentRef("s39"), segs.get)


def test_expand_segments_refuses_deep_chains() -> None:
    segs: dict[str, Rule | None] = {"s0": IsMissing("age")}
    for i in range(1, 300):
        segs[f"s{i}"] = Not(SegmentRef(f"s{i - 1}"))
    with pytest.raises(RuleValidationError, match="nested too deeply once segments are inlined"):
        expand_segments(SegmentRef("s299"), segs.get)
