"""The targeting-rule AST: one immutable tree that the parser builds and every evaluator walks.

Nodes are frozen, slotted dataclasses holding tuples, so rules are hashable and can key caches
(the decision index dedups identical rules). Source positions (``line``/``column``) ride along for
error messages but are excluded from equality and hashing, so ``parse(to_text(r)) == r``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

Value: TypeAlias = str | int | float | bool
CompareOp = Literal["=", "!=", "<", "<=", ">", ">="]
COMPARE_OPS: tuple[str, ...] = ("=", "!=", "<", "<=", ">", ">=")

SEGMENTS_FIELD = "__segments__"
"""Feature key (per-user) and list column (SQL, bitmaps) holding the user's list-segment names."""

# Limits that keep hostile input (deep nesting, huge lists) from exhausting the service.
MAX_TEXT_LENGTH = 1_000_000
MAX_DEPTH = 50
MAX_NODES = 2_000
MAX_LIST_VALUES = 10_000
# After inlining rule-based segments (expand_segments) a rule may grow up to these bounds.
MAX_EXPANDED_DEPTH = 2 * MAX_DEPTH
MAX_EXPANDED_NODES = 10 * MAX_NODES

KEYWORDS: frozenset[str] = frozenset(
    {
        "and",
        "or",
        "not",
        "between",
        "in",
        "has",
        "any",
        "all",
        "is",
        "missing",
        "true",
        "false",
        "segment",
    }
)
"""Reserved words (case-insensitive); they cannot be dimension names."""


def _check_values(values: tuple[Value, ...]) -> None:
    for v in values:
        _check_value(v)


MAX_INT = 2**63 - 1
"""Integers must fit a signed 64-bit column (SQL BIGINT); larger literals are refused."""


def number_ok(v: object) -> bool:
    """A finite float, or an int (not bool) within +/- ``MAX_INT``; other types pass."""
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return -MAX_INT <= v <= MAX_INT
    return True


def _check_value(v: object) -> None:
    if not number_ok(v):
        raise ValueError(f"number {v!r} is out of range (finite, 64-bit integers)")
    if not isinstance(v, str | int | float):  # bool is an int
        raise ValueError(f"{v!r} is not a rule value (string, number, true or false)")


@dataclass(frozen=True, slots=True)
class And:
    """All children hold; n-ary (at least two children)."""

    children: tuple[Rule, ...]
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", tuple(self.children))
        if len(self.children) < 2:
            raise ValueError("And needs at least two children")


@dataclass(frozen=True, slots=True)
class Or:
    """At least one child holds; n-ary (at least two children)."""

    children: tuple[Rule, ...]
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", tuple(self.children))
        if len(self.children) < 2:
            raise ValueError("Or needs at least two children")


@dataclass(frozen=True, slots=True)
class Not:
    """Complement over all users (two-valued: missing makes the child false, so Not true)."""

    child: Rule
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Compare:
    """``dim op value``; ``!=`` means ``not (dim = value)``."""

    dim: str
    op: CompareOp
    value: Value
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    value_columns: tuple[int, ...] = field(default=(), compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if self.op not in COMPARE_OPS:
            raise ValueError(f"unknown comparison operator {self.op!r}")
        _check_value(self.value)


@dataclass(frozen=True, slots=True)
class Between:
    """``low <= dim <= high`` (inclusive both ends)."""

    dim: str
    low: int | float
    high: int | float
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    value_columns: tuple[int, ...] = field(default=(), compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        _check_values((self.low, self.high))


@dataclass(frozen=True, slots=True)
class InList:
    """``dim in (values)``; ``negated`` is ``dim not in (...)`` = ``not (dim in (...))``."""

    dim: str
    values: tuple[Value, ...]
    negated: bool = False
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    value_columns: tuple[int, ...] = field(default=(), compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        _check_values(self.values)


@dataclass(frozen=True, slots=True)
class HasAny:
    """The user's set shares at least one value with ``values`` (set dimensions)."""

    dim: str
    values: tuple[Value, ...]
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    value_columns: tuple[int, ...] = field(default=(), compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        _check_values(self.values)


@dataclass(frozen=True, slots=True)
class HasAll:
    """The user's set holds every one of ``values`` (set dimensions); an empty list matches none."""

    dim: str
    values: tuple[Value, ...]
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    value_columns: tuple[int, ...] = field(default=(), compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        _check_values(self.values)


@dataclass(frozen=True, slots=True)
class IsMissing:
    """No value (absent, ``None``; for set dimensions also an empty set); ``negated`` = present."""

    dim: str
    negated: bool = False
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """Membership in a named segment (rule-based ones are inlined by ``expand_segments``)."""

    name: str
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)


Rule: TypeAlias = (
    And | Or | Not | Compare | Between | InList | HasAny | HasAll | IsMissing | SegmentRef
)
Leaf: TypeAlias = Compare | Between | InList | HasAny | HasAll | IsMissing | SegmentRef

NODE_TYPES: tuple[type, ...] = (
    And,
    Or,
    Not,
    Compare,
    Between,
    InList,
    HasAny,
    HasAll,
    IsMissing,
    SegmentRef,
)
"""Every node class; a walker (``visitor.RuleVisitor``) dispatches on exactly these."""
LEAF_TYPES: tuple[type, ...] = NODE_TYPES[3:]


class UnknownRuleNode(TypeError):
    """A walker met a node it has no method for: a new node type, or not a rule node at all."""

    def __init__(self, node: object, *, walker: str = "rule walker") -> None:
        super().__init__(f"{walker} has no case for rule node {type(node).__name__}: {node!r}")
        self.node = node
        self.walker = walker


def children(rule: Rule) -> tuple[Rule, ...]:
    """The direct sub-rules of a node (empty for predicates); ``UnknownRuleNode`` otherwise."""
    if isinstance(rule, And | Or):
        return rule.children
    if isinstance(rule, Not):
        return (rule.child,)
    if isinstance(rule, LEAF_TYPES):
        return ()
    raise UnknownRuleNode(rule, walker="children")


def walk(rule: Rule) -> Iterator[Rule]:
    """Every node, pre-order (iterative, so hostile depth cannot blow the stack)."""
    stack: list[Rule] = [rule]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


def depth(rule: Rule) -> int:
    """Nesting depth: a predicate is 1, ``not p`` is 2 (iterative)."""
    best = 0
    stack: list[tuple[Rule, int]] = [(rule, 1)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in children(node))
    return best


def size(rule: Rule) -> int:
    """Number of nodes."""
    return sum(1 for _ in walk(rule))


def dimensions(rule: Rule) -> frozenset[str]:
    """Dimension names the rule reads (not counting the segment list field)."""
    return frozenset(n.dim for n in walk(rule) if not isinstance(n, And | Or | Not | SegmentRef))


def segment_names(rule: Rule) -> frozenset[str]:
    """Segment names referenced directly by the rule (not through other segments)."""
    return frozenset(n.name for n in walk(rule) if isinstance(n, SegmentRef))
