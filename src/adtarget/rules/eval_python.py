"""Per-user evaluation (decision path): does this user's feature mapping match the rule?

``compile_rule`` turns a rule into the Python source of one flat boolean expression, compiled
once, so a call costs a few dict lookups and comparisons (no tree walk, no per-node call). The
decision engine compiles each line item's rule once and calls it thousands of times per second.
Values are bound as closure constants (never pasted into source), lists become frozensets.

If user data has the wrong type (``age`` is a string), the compiled expression raises
``TypeError`` and the call falls back to ``_interpret``, a tree walk in which such a predicate is
false — a wrongly typed value never satisfies a comparison.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from adtarget.errors import RuleValidationError
from adtarget.rules.ast import (
    MAX_EXPANDED_DEPTH,
    SEGMENTS_FIELD,
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
    depth,
)
from adtarget.rules.visitor import RuleVisitor

Features = Mapping[str, Any]
Predicate = Callable[[Features], bool]

_CONTAINERS: frozenset[type] = frozenset({frozenset, set, list, tuple, dict})
_PY_OPS = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def is_missing(value: Any) -> bool:
    """Missing = ``None`` or an empty set/list (for set dimensions)."""
    return value is None or (type(value) in _CONTAINERS and not value)


class _Codegen(RuleVisitor[str]):
    """Builds one expression string; constants go to ``self.env`` under generated names."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {"_CONTAINERS": _CONTAINERS}
        self.n = 0

    def const(self, value: Any) -> str:
        name = f"_c{self.n}"
        self.n += 1
        self.env[name] = value
        return name

    def var(self) -> str:
        self.n += 1
        return f"_v{self.n}"

    def visit_And(self, rule: And) -> str:
        return "(" + " and ".join(self.visit(c) for c in rule.children) + ")"

    def visit_Or(self, rule: Or) -> str:
        return "(" + " or ".join(self.visit(c) for c in rule.children) + ")"

    def visit_Not(self, rule: Not) -> str:
        return f"(not {self.visit(rule.child)})"

    def visit_SegmentRef(self, rule: SegmentRef) -> str:
        return f"({self.const(rule.name)} in (g({SEGMENTS_FIELD!r}) or ()))"

    def visit_Compare(self, rule: Compare) -> str:
        key = self.const(rule.dim)
        if rule.op in ("=", "!="):
            # None == v is False, None != v is True: exactly "not (missing = v)".
            return f"(g({key}) {_PY_OPS[rule.op]} {self.const(rule.value)})"
        v = self.var()
        return f"(({v} := g({key})) is not None and {v} {rule.op} {self.const(rule.value)})"

    def visit_Between(self, rule: Between) -> str:
        key = self.const(rule.dim)
        v = self.var()
        lo, hi = self.const(rule.low), self.const(rule.high)
        return f"(({v} := g({key})) is not None and {lo} <= {v} <= {hi})"

    def visit_InList(self, rule: InList) -> str:
        key = self.const(rule.dim)
        if not rule.values:
            return "True" if rule.negated else "False"
        op = "not in" if rule.negated else "in"
        return f"(g({key}) {op} {self.const(frozenset(rule.values))})"

    def visit_HasAny(self, rule: HasAny) -> str:
        key = self.const(rule.dim)
        if not rule.values:
            return "False"
        return f"(not {self.const(frozenset(rule.values))}.isdisjoint(g({key}) or ()))"

    def visit_HasAll(self, rule: HasAll) -> str:
        key = self.const(rule.dim)
        if not rule.values:
            return "False"
        return f"{self.const(frozenset(rule.values))}.issubset(g({key}) or ())"

    def visit_IsMissing(self, rule: IsMissing) -> str:
        key = self.const(rule.dim)
        v = self.var()
        test = f"(({v} := g({key})) is None or ({v}.__class__ in _CONTAINERS and not {v}))"
        return f"(not {test})" if rule.negated else test


def compile_rule(rule: Rule) -> Predicate:
    """Compile ``rule`` once into a fast ``features -> bool`` function.

    ``features`` maps dimension names to values (missing = absent or ``None``; set dimensions
    hold any iterable of str, frozenset preferred) and ``"__segments__"`` to the user's
    list-segment names. Rule-based segments must be inlined first (``expand_segments``).
    """
    if depth(rule) > MAX_EXPANDED_DEPTH:
        raise RuleValidationError(
            f"rule is nested too deeply to compile (more than {MAX_EXPANDED_DEPTH} levels)",
            line=0,
            column=0,
        )
    gen = _Codegen()
    body = gen.visit(rule)
    gen.env["_interpret"] = _interpret
    gen.env["_rule"] = rule
    src = (
        "def _match(features):\n"
        "    g = features.get\n"
        "    try:\n"
        f"        return {body}\n"
        "    except TypeError:\n"
        "        return _interpret(_rule, features)\n"
    )
    code = compile(src, "<adtarget rule>", "exec")
    namespace = dict(gen.env)
    exec(code, namespace)  # noqa: S102 - source built from our AST, values bound as constants
    fn: Predicate = namespace["_match"]
    fn.__doc__ = f"compiled rule: {body[:200]}"
    return fn


def matches(rule: Rule, features: Features) -> bool:
    """One-off evaluation (compiles nothing; use ``compile_rule`` on hot paths)."""
    return _interpret(rule, features)


def _holds(x: Any, check: Callable[[Any], Any]) -> bool:
    """A predicate on a present value; a missing or wrongly typed value never satisfies it."""
    if x is None:
        return False
    try:
        return bool(check(x))
    except TypeError:
        return False


class _Interpreter(RuleVisitor[bool]):
    """Reference tree walk with the compiled code's semantics (``matches`` and the fallback)."""

    def visit_And(self, rule: And, features: Features) -> bool:
        return all(self.visit(c, features) for c in rule.children)

    def visit_Or(self, rule: Or, features: Features) -> bool:
        return any(self.visit(c, features) for c in rule.children)

    def visit_Not(self, rule: Not, features: Features) -> bool:
        return not self.visit(rule.child, features)

    def visit_SegmentRef(self, rule: SegmentRef, features: Features) -> bool:
        return rule.name in (features.get(SEGMENTS_FIELD) or ())

    def visit_IsMissing(self, rule: IsMissing, features: Features) -> bool:
        return is_missing(features.get(rule.dim)) != rule.negated

    def visit_Compare(self, rule: Compare, features: Features) -> bool:
        x, v = features.get(rule.dim), rule.value
        if rule.op == "!=":
            return not _holds(x, lambda x: x == v)
        return _holds(x, lambda x: _COMPARE[rule.op](x, v))

    def visit_Between(self, rule: Between, features: Features) -> bool:
        return _holds(features.get(rule.dim), lambda x: rule.low <= x <= rule.high)

    def visit_InList(self, rule: InList, features: Features) -> bool:
        found = _holds(features.get(rule.dim), lambda x: x in frozenset(rule.values))
        return not found if rule.negated else found

    def visit_HasAny(self, rule: HasAny, features: Features) -> bool:
        values = frozenset(rule.values)
        return bool(values) and _holds(features.get(rule.dim), lambda x: not values.isdisjoint(x))

    def visit_HasAll(self, rule: HasAll, features: Features) -> bool:
        values = frozenset(rule.values)
        return bool(values) and _holds(features.get(rule.dim), values.issubset)


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_INTERPRETER = _Interpreter()


def _interpret(rule: Rule, features: Features) -> bool:
    """Reference tree walk with the same semantics; a wrongly typed value fails its predicate."""
    return _INTERPRETER.visit(rule, features)
