"""The shared rule visitor: every walker dispatches through it, and an unknown node raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adtarget.decision.dnf import to_conjunctions
from adtarget.rules.ast import NODE_TYPES, And, Compare, Not, Rule, walk
from adtarget.rules.eval_bitmap import MemoryBitmapIndex, count, evaluate
from adtarget.rules.eval_python import compile_rule, matches
from adtarget.rules.eval_sql import to_sql
from adtarget.rules.format import to_json, to_text
from adtarget.rules.registry import DimensionSpec, make_registry
from adtarget.rules.validate import expand_segments, validate
from adtarget.rules.visitor import RuleVisitor, UnknownRuleNode

REG = make_registry([DimensionSpec("country", "category"), DimensionSpec("age", "number")])


@dataclass(frozen=True)
class Within:
    """A node type the walkers were never taught (as if added to ``ast.py`` and forgotten)."""

    dim: str
    km: int


def _unknown_inside() -> Any:
    # nested, so every walker has to reach it through And / Not
    return And((Compare("country", "=", "US"), Not(Within("country", 5))))  # type: ignore[arg-type]


WALKERS: dict[str, Callable[[Any], object]] = {
    "matches": lambda r: matches(r, {"country": "US"}),
    "compile_rule": compile_rule,
    "to_sql": lambda r: to_sql(r, registry=REG),
    "to_text": to_text,
    "to_json": to_json,
    "validate": lambda r: validate(r, REG),
    "expand_segments": lambda r: expand_segments(r, lambda name: None),
    "evaluate": lambda r: evaluate(r, MemoryBitmapIndex.from_rows([{"country": "US"}], REG)),
    "count": lambda r: count(r, MemoryBitmapIndex.from_rows([{"country": "US"}], REG)),
    "to_conjunctions": to_conjunctions,
    "walk": lambda r: list(walk(r)),
}


@pytest.mark.parametrize("name", sorted(WALKERS))
def test_every_walker_names_an_unknown_node(name: str) -> None:
    with pytest.raises(UnknownRuleNode) as info:
        WALKERS[name](_unknown_inside())
    assert "Within" in str(info.value)
    assert isinstance(info.value.node, Within)
    # a programming error, never a user's 4xx: it stays a TypeError
    assert isinstance(info.value, TypeError)


def test_a_walker_without_a_case_names_itself_and_the_node() -> None:
    class CountryOnly(RuleVisitor[str]):
        def visit_Compare(self, node: Compare) -> str:
            return node.dim

    walker = CountryOnly()
    assert walker.visit(Compare("country", "=", "US")) == "country"
    with pytest.raises(UnknownRuleNode, match=r"CountryOnly has no case for rule node Not"):
        walker.visit(Not(Compare("country", "=", "US")))


def test_dispatch_is_by_exact_node_class() -> None:
    seen: list[str] = []

    def note(self: object, node: object) -> None:
        seen.append(type(node).__name__)

    names = type("Names", (RuleVisitor,), {f"visit_{t.__name__}": note for t in NODE_TYPES})
    rule: Rule = And((Compare("age", ">", 3), Not(Compare("country", "=", "US"))))
    for node in walk(rule):
        names().visit(node)
    assert seen == ["And", "Compare", "Not", "Compare"]
