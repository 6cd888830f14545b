"""Rules → disjunctive normal form over per-dimension literals, for the boolean-expression index.

Why DNF (Whang et al., "Indexing Boolean Expressions", VLDB 2009): a conjunction holds iff none
of its literals fails, and whether a literal fails depends on one dimension's value only, so the
index can precompute, per dimension and per class of values, the set of conjunctions that fail.

Negation is pushed to the leaves (NNF) and kept as a literal's polarity: ``not (age < 30)`` is
*not* ``age >= 30`` (a missing age satisfies the first only), so intervals are never flipped.
Literals the per-dimension bitmaps cannot decide exactly (``not has all``, bool bounds) mark the
conjunction *opaque*: the bitmap phase treats them as true and the index verifies the line item
with the per-user evaluator, so nothing wrong matches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from adtarget.rules.ast import (
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
    Value,
)
from adtarget.rules.visitor import RuleVisitor

MAX_CONJUNCTIONS = 64
"""Per-rule cap on the DNF blow-up; bigger rules are evaluated directly on every request."""

INF = math.inf


class TooManyConjunctions(Exception):
    """The rule's DNF exceeds ``MAX_CONJUNCTIONS``; it goes to the verify-always list."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A numeric interval; ``lo``/``hi`` may be ±inf (then the inclusive flag is irrelevant)."""

    lo: float
    hi: float
    lo_incl: bool = True
    hi_incl: bool = True

    def is_empty(self) -> bool:
        """True when no number lies inside."""
        if self.lo > self.hi:
            return True
        return self.lo == self.hi and not (self.lo_incl and self.hi_incl)

    def intersect(self, other: Interval) -> Interval:
        """The overlap of two intervals (possibly empty)."""
        if other.lo > self.lo or (other.lo == self.lo and not other.lo_incl):
            lo, lo_incl = other.lo, other.lo_incl
        else:
            lo, lo_incl = self.lo, self.lo_incl
        if other.hi < self.hi or (other.hi == self.hi and not other.hi_incl):
            hi, hi_incl = other.hi, other.hi_incl
        else:
            hi, hi_incl = self.hi, self.hi_incl
        return Interval(lo, hi, lo_incl, hi_incl)


@dataclass(frozen=True, slots=True)
class Literal:
    """One NNF leaf: ``kind`` in eq | num | any | missing | opaque, with its polarity."""

    kind: str
    dim: str
    positive: bool
    values: frozenset[Value] = frozenset()
    interval: Interval | None = None


@dataclass(slots=True)
class Conjunction:
    """The normalised literals of one DNF term, merged per dimension.

    ``pos_eq[d]`` = values the dimension must equal one of (merged by intersection),
    ``neg_eq[d]`` = values it must not equal, ``pos_num[d]`` = interval it must lie in,
    ``neg_num[d]`` = intervals it must lie outside (a missing value lies outside), ``pos_any[d]``
    = value lists the set must share one of each of (``has all`` = one list per value),
    ``neg_any[d]`` = values it must share none of,
    ``must_miss`` / ``must_have`` = ``is missing`` / ``is not missing``.
    """

    pos_eq: dict[str, frozenset[Value]] = field(default_factory=dict)
    neg_eq: dict[str, frozenset[Value]] = field(default_factory=dict)
    pos_num: dict[str, Interval] = field(default_factory=dict)
    neg_num: dict[str, list[Interval]] = field(default_factory=dict)
    pos_any: dict[str, list[frozenset[Value]]] = field(default_factory=dict)
    neg_any: dict[str, frozenset[Value]] = field(default_factory=dict)
    must_miss: set[str] = field(default_factory=set)
    must_have: set[str] = field(default_factory=set)
    opaque: bool = False
    unsat: bool = False

    def dims(self) -> set[str]:
        """Every dimension this conjunction constrains."""
        out: set[str] = set()
        for part in (
            self.pos_eq,
            self.neg_eq,
            self.pos_num,
            self.neg_num,
            self.pos_any,
            self.neg_any,
        ):
            out.update(part)
        return out | self.must_miss | self.must_have

    def add(self, lit: Literal) -> None:
        """Merge one literal in (intersections for positive sets/intervals)."""
        d = lit.dim
        if lit.kind == "opaque":
            self.opaque = True
        elif lit.kind == "missing":
            (self.must_miss if lit.positive else self.must_have).add(d)
        elif lit.kind == "eq":
            if lit.positive:
                merged = self.pos_eq[d] & lit.values if d in self.pos_eq else lit.values
                self.pos_eq[d] = merged
                self.unsat |= not merged
            elif lit.values:
                self.neg_eq[d] = self.neg_eq.get(d, frozenset()) | lit.values
        elif lit.kind == "num":
            assert lit.interval is not None
            if lit.positive:
                iv = self.pos_num[d].intersect(lit.interval) if d in self.pos_num else lit.interval
                self.pos_num[d] = iv
                self.unsat |= iv.is_empty()
            elif not lit.interval.is_empty():
                self.neg_num.setdefault(d, []).append(lit.interval)
        elif lit.kind == "any":
            if lit.positive:
                if not lit.values:
                    self.unsat = True
                elif lit.values not in self.pos_any.get(d, []):
                    self.pos_any.setdefault(d, []).append(lit.values)
            elif lit.values:
                self.neg_any[d] = self.neg_any.get(d, frozenset()) | lit.values
        else:  # pragma: no cover - kinds are produced only by _Dnf below
            raise ValueError(f"unknown literal kind {lit.kind!r}")


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _interval_of(node: Compare | Between) -> Interval | None:
    if isinstance(node, Between):
        if not (_is_number(node.low) and _is_number(node.high)):
            return None
        return Interval(float(node.low), float(node.high))
    if not _is_number(node.value):
        return None
    v = float(node.value)
    return {
        "<": Interval(-INF, v, False, False),
        "<=": Interval(-INF, v, False, True),
        ">": Interval(v, INF, False, False),
        ">=": Interval(v, INF, True, False),
    }[node.op]


Term = tuple[Literal, ...]


class _Dnf(RuleVisitor[list[Term]]):
    """DNF of a node under a polarity: ``visit(node, positive)`` → literal tuples (ORed)."""

    def visit_Not(self, node: Not, positive: bool) -> list[Term]:
        return self.visit(node.child, not positive)

    def visit_And(self, node: And | Or, positive: bool) -> list[Term]:
        conjunctive = isinstance(node, And) == positive
        parts = [self.visit(c, positive) for c in node.children]
        if not conjunctive:
            out = [t for p in parts for t in p]
            if len(out) > MAX_CONJUNCTIONS:
                raise TooManyConjunctions
            return out
        acc: list[Term] = [()]
        for p in parts:
            if len(acc) * len(p) > MAX_CONJUNCTIONS:
                raise TooManyConjunctions
            acc = [a + b for a in acc for b in p]
        return acc

    visit_Or = visit_And

    # Leaves: one term of the literals (ANDed) the leaf becomes; () = constant true.

    def visit_Compare(self, node: Compare, positive: bool) -> list[Term]:
        if node.op in ("=", "!="):
            pos = positive if node.op == "=" else not positive
            return [(Literal("eq", node.dim, pos, frozenset((node.value,))),)]
        return [(_numeric(node, positive),)]

    def visit_Between(self, node: Between, positive: bool) -> list[Term]:
        return [(_numeric(node, positive),)]

    def visit_InList(self, node: InList, positive: bool) -> list[Term]:
        pos = positive != node.negated
        return [(Literal("eq", node.dim, pos, frozenset(node.values)),)]

    def visit_HasAny(self, node: HasAny, positive: bool) -> list[Term]:
        return [(Literal("any", node.dim, positive, frozenset(node.values)),)]

    def visit_IsMissing(self, node: IsMissing, positive: bool) -> list[Term]:
        return [(Literal("missing", node.dim, positive != node.negated),)]

    def visit_HasAll(self, node: HasAll, positive: bool) -> list[Term]:
        if positive and node.values:
            # has all (a, b) == has any (a) and has any (b)
            return [tuple(Literal("any", node.dim, True, frozenset((v,))) for v in node.values)]
        if positive:
            return [(Literal("any", node.dim, True, frozenset()),)]  # empty list matches none
        return [(Literal("opaque", node.dim, False),)]

    def visit_SegmentRef(self, node: SegmentRef, positive: bool) -> list[Term]:
        # the per-user evaluator reads list segments from SEGMENTS_FIELD: has any (name)
        return [(Literal("any", SEGMENTS_FIELD, positive, frozenset((node.name,))),)]


def _numeric(node: Compare | Between, positive: bool) -> Literal:
    iv = _interval_of(node)
    if iv is None:
        return Literal("opaque", node.dim, positive)
    return Literal("num", node.dim, positive, interval=iv)


_dnf = _Dnf().visit


def to_conjunctions(rule: Rule | None) -> list[Conjunction]:
    """The satisfiable conjunctions of ``rule`` (``None`` = match everyone = one empty term).

    Raises:
        TooManyConjunctions: when the DNF would exceed ``MAX_CONJUNCTIONS`` terms.
    """
    if rule is None:
        return [Conjunction()]
    out: list[Conjunction] = []
    for term in _dnf(rule, True):
        conj = Conjunction()
        for lit in term:
            conj.add(lit)
        if not conj.unsat:
            out.append(conj)
    return out
