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

Features = Mapping[str, Any]
Predicate = Callable[[Features], bool]

_CONTAINERS: frozenset[type] = frozenset({frozenset, set, list, tuple, dict})
_PY_OPS = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def is_missing(value: Any) -> bool:
    """Missing = ``None`` or an empty set/list (for set dimensions)."""
    return value is None or (type(value) in _CONTAINERS and not value)


class _Codegen:
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

    def expr(self, rule: Rule) -> str:
        if isinstance(rule, And):
            return "(" + " and ".join(self.expr(c) for c in rule.children) + ")"
        if isinstance(rule, Or):
            return "(" + " or ".join(self.expr(c) for c in rule.children) + ")"
        if isinstance(rule, Not):
            return f"(not {self.expr(rule.child)})"
        if isinstance(rule, SegmentRef):
            return f"({self.const(rule.name)} in (g({SEGMENTS_FIELD!r}) or ()))"
        key = self.const(rule.dim)
        if isinstance(rule, Compare):
            if rule.op in ("=", "!="):
                # None == v is False, None != v is True: exactly "not (missing = v)".
                return f"(g({key}) {_PY_OPS[rule.op]} {self.const(rule.value)})"
            v = self.var()
            return f"(({v} := g({key})) is not None and {v} {rule.op} {self.const(rule.value)})"
        if isinstance(rule, Between):
            v = self.var()
            lo, hi = self.const(rule.low), self.const(rule.high)
            return f"(({v} := g({key})) is not None and {lo} <= {v} <= {hi})"
        if isinstance(rule, InList):
            if not rule.values:
                return "True" if rule.negated else "False"
            op = "not in" if rule.negated else "in"
            return f"(g({key}) {op} {self.const(frozenset(rule.values))})"
        if isinstance(rule, HasAny):
            if not rule.values:
                return "False"
            return f"(not {self.const(frozenset(rule.values))}.isdisjoint(g({key}) or ()))"
        if isinstance(rule, HasAll):
            if not rule.values:
                return "False"
            return f"{self.const(frozenset(rule.values))}.issubset(g({key}) or ())"
        if isinstance(rule, IsMissing):
            v = self.var()
            test = f"(({v} := g({key})) is None or ({v}.__class__ in _CONTAINERS and not {v}))"
            return f"(not {test})" if rule.negated else test
        raise TypeError(f"not a rule node: {rule!r}")


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
    body = gen.expr(rule)
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


def _leaf(rule: Rule, features: Features) -> bool:
    if isinstance(rule, SegmentRef):
        return rule.name in (features.get(SEGMENTS_FIELD) or ())
    x = features.get(rule.dim)  # type: ignore[union-attr]
    if isinstance(rule, IsMissing):
        return is_missing(x) != rule.negated
    if isinstance(rule, Compare) and rule.op == "!=":
        return not _leaf(Compare(rule.dim, "=", rule.value), features)
    if isinstance(rule, InList) and rule.negated:
        return not _leaf(InList(rule.dim, rule.values), features)
    if x is None:
        return False
    try:
        if isinstance(rule, Compare):
            v = rule.value
            op = rule.op
            return bool(
                x == v
                if op == "="
                else x < v
                if op == "<"
                else x <= v
                if op == "<="
                else x > v
                if op == ">"
                else x >= v
            )
        if isinstance(rule, Between):
            return bool(rule.low <= x <= rule.high)
        if isinstance(rule, InList):
            return x in frozenset(rule.values)
        if isinstance(rule, HasAny):
            return bool(rule.values) and not frozenset(rule.values).isdisjoint(x)
        if isinstance(rule, HasAll):
            return bool(rule.values) and frozenset(rule.values).issubset(x)
    except TypeError:
        return False
    raise TypeError(f"not a rule node: {rule!r}")


def _interpret(rule: Rule, features: Features) -> bool:
    """Reference tree walk with the same semantics; a wrongly typed value fails its predicate."""
    if isinstance(rule, And):
        return all(_interpret(c, features) for c in rule.children)
    if isinstance(rule, Or):
        return any(_interpret(c, features) for c in rule.children)
    if isinstance(rule, Not):
        return not _interpret(rule.child, features)
    return _leaf(rule, features)
