"""Dimension specs: names usable in rules, known types, allowed values only where they apply."""

from __future__ import annotations

import pytest

from adtarget.errors import InvalidValue
from adtarget.rules.registry import DimensionSpec, check_dimension_name, make_registry


def test_valid_specs() -> None:
    spec = DimensionSpec("geo.country", "category", frozenset({"US"}), "ISO code")
    assert spec.allowed_values == frozenset({"US"})
    assert DimensionSpec("x", "set", {"a"}).allowed_values == frozenset({"a"})  # type: ignore[arg-type]
    assert hash(spec) == hash(DimensionSpec("geo.country", "category", frozenset({"US"})))


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("1abc", "must match"),
        ("a-b", "must match"),
        ("", "must match"),
        ("And", "reserved word"),
        ("missing", "reserved word"),
        ("segment", "reserved word"),
        ("__segments__", "reserved for segment lists"),
    ],
)
def test_bad_names(name: str, fragment: str) -> None:
    with pytest.raises(InvalidValue, match=fragment):
        check_dimension_name(name)
    with pytest.raises(InvalidValue, match=fragment):
        DimensionSpec(name, "category")


def test_bad_type_and_misplaced_allowed_values() -> None:
    with pytest.raises(InvalidValue, match="type 'text' is not one of category, number, set, bool"):
        DimensionSpec("x", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="allowed_values only apply to category/set"):
        DimensionSpec("x", "number", frozenset({"1"}))


def test_make_registry_rejects_duplicates() -> None:
    reg = make_registry([DimensionSpec("a", "number"), DimensionSpec("b", "bool")])
    assert list(reg) == ["a", "b"]
    with pytest.raises(InvalidValue, match="'a' is defined twice"):
        make_registry([DimensionSpec("a", "number"), DimensionSpec("a", "bool")])
