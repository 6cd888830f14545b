"""Counting a conjunction without building its sparse intermediates.

Why not just ``len(a & b & c & d)``: on 10M users every clause of a typical targeting rule is a
dense bitmap (bitset containers), and intersecting them smallest-first soon produces a result
under 4096 users per 65536 — Roaring then converts every container to a sorted array, which
costs milliseconds, while a bitset-by-bitset operation or a cardinality-only call costs tens of
microseconds. So for a conjunction whose clauses are all dense we intersect largest-first (the
running result stays a bitset) and finish the last two clauses by inclusion-exclusion, with
cardinality calls only:

    |X & A & B| = |X & A| + |X & B| - |X & (A | B)|

which is exact. Each clause is still evaluated by the rule language's bitmap evaluator; only the
final combination is planned here. A sparse clause (a small segment) makes the whole thing cheap
anyway, so then we intersect smallest-first as usual.

The overlap matrix has the same trap twice over: building each sparse rule result pays the
conversion, and each cell against an array-stored result costs one lookup per member. So a
sparse conjunction is kept as its complement (``dense_form``), built from dense bitmaps only,
and every cell is one bitset-by-bitset ``intersection_cardinality`` plus arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from pyroaring import AbstractBitMap, BitMap

from adtarget.rules.ast import And, Compare, InList, IsMissing, Not, Rule, SegmentRef, Value
from adtarget.rules.eval_bitmap import (
    BitmapIndex,
    Memo,
    count,
    evaluate_shared,
    polarity,
    split,
    union_all,
)

# A clause counts as dense when it holds at least 1/16 of the users: Roaring keeps a container
# as a bitset above 4096 of 65536 values (1/16), so dense-by-dense results stay bitsets.
DENSE_FRACTION = 16
# A sparse result this much smaller than the universe stays as it is in the overlap matrix:
# a cell against it is one lookup per member, cheaper than a bitset-wide AND.
SPARSE_KEEP = 256


def count_rule(rule: Rule, index: BitmapIndex, memo: Memo | None = None) -> int:
    """Exact number of users matching ``rule`` (same answer as ``eval_bitmap.count``).

    With ``memo`` (a snapshot's ``ResultCache``), clause results are reused across calls."""
    negated, core = polarity(rule)
    if isinstance(core, InList) and len(core.values) >= 2:
        n = _in_list_count(core, index, memo)
        return len(index.universe()) - n if negated else n
    dense = getattr(index, "dense", None)  # a snapshot's own index (not a live overlay)
    if dense is not None and not _stored_leaf(core):
        n = dense.count(rule, memo)
        if n is not None:
            return int(n)
    if not isinstance(rule, And) or len(rule.children) < 3:
        return count(rule, index, memo)
    negs = [evaluate_shared(c.child, index, memo) for c in rule.children if isinstance(c, Not)]
    pos = [evaluate_shared(c, index, memo) for c in rule.children if not isinstance(c, Not)]
    pos.sort(key=len, reverse=True)
    if len(pos) < 2 or len(pos[-1]) * DENSE_FRACTION < len(index.universe()):
        return count(rule, index, memo)  # sparse: the evaluator's smallest-first order
    tail = pos[-2:] if len(pos) >= 3 else pos[-1:]
    head = pos[: len(pos) - len(tail)]
    # Only bitmaps created here are mutated; clause results may belong to the index.
    acc: AbstractBitMap = (
        _and(head[0], head[1]) if len(head) >= 2 else BitMap(head[0], optimize=False)
    )
    for bm in head[2:]:
        acc &= bm
    for bm in negs:
        acc -= bm
    if len(tail) == 1:
        return acc.intersection_cardinality(tail[0])
    a, b = tail
    both = acc.intersection_cardinality(a) + acc.intersection_cardinality(b)
    return both - acc.intersection_cardinality(a | b)


def _stored_leaf(rule: Rule) -> bool:
    """One stored bitmap (a value, a set member, present, a segment): Roaring's ``len`` is
    the count, no dense plan needed. Ranges and ``has any``/``has all`` are not this."""
    if isinstance(rule, Compare):
        return rule.op in ("=", "!=") and not _is_number(rule.value)
    return isinstance(rule, IsMissing | SegmentRef)


def _is_number(v: Value) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class Form(NamedTuple):
    """A rule's result for the overlap matrix: its members, or (``negated``) the users of the
    universe it does *not* match. Which one is kept is whichever Roaring stores as bitsets."""

    bitmap: AbstractBitMap
    negated: bool


def _in_list_count(rule: InList, index: BitmapIndex, memo: Memo | None) -> int:
    """Users whose value is one of the list's: the sum of each value's users, no union built.

    Exact because ``in`` only applies to one-valued dimensions (category, bool, number; the
    validator refuses it on sets), so no user is counted under two distinct values."""
    distinct: dict[tuple[str, Any], Value] = {}
    for v in rule.values:
        number = isinstance(v, int | float) and not isinstance(v, bool)
        distinct.setdefault(("n", float(v)) if number else (type(v).__name__, v), v)
    return sum(
        len(evaluate_shared(Compare(rule.dim, "=", v), index, memo)) for v in distinct.values()
    )


def overlap_matrix(forms: Sequence[Form], universe: int) -> list[list[int]]:
    """Pairwise intersection sizes (diagonal: each rule's size) from cardinality calls only.

    With ``P`` a kept result, ``C`` a kept complement (``n`` users in all):
    ``|P1 & P2|``; ``|P - C| = |P| - |P & C|``; ``|~C1 & ~C2| = n - |C1| - |C2| + |C1 & C2|``.
    """
    n = len(forms)
    sizes = [len(f.bitmap) for f in forms]
    out = [[0] * n for _ in range(n)]
    for i, a in enumerate(forms):
        out[i][i] = universe - sizes[i] if a.negated else sizes[i]
        for j in range(i + 1, n):
            b = forms[j]
            both = a.bitmap.intersection_cardinality(b.bitmap)
            if a.negated and b.negated:
                c = universe - sizes[i] - sizes[j] + both
            elif a.negated:
                c = sizes[j] - both
            elif b.negated:
                c = sizes[i] - both
            else:
                c = both
            out[i][j] = out[j][i] = int(c)
    return out


def dense_form(rule: Rule, index: BitmapIndex, memo: Memo) -> Form:
    """``rule``'s result in the form the matrix is cheapest on (see the module doc).

    Why: a 5-clause rule over 10M users is sparse (array containers) while its clauses are
    dense; building it costs the dense-to-sparse conversion (~2 ms) and every cell against it
    then costs one lookup per member. Its complement, ``~A | ~B | ... | N`` for
    ``A and B and ... and not N``, is built from dense bitmaps only, and a cell between two
    bitset-stored results is one vectorised AND-and-count. Clause complements go through
    ``memo`` (a ``not`` node), so a clause shared by several rules is complemented once.
    """
    universe = index.universe()
    n = len(universe)
    if isinstance(rule, And):
        pos_rules, neg_rules = split(rule.children)
        pos = [(evaluate_shared(c, index, memo), c) for c in pos_rules]
        pos.sort(key=lambda p: len(p[0]), reverse=True)
        if len(pos) >= 2 and len(pos[-1][0]) * DENSE_FRACTION >= n:
            # How far the running AND stays dense, estimated as if clauses were independent
            # (a pass per check would cost as much as the AND; a wrong guess costs time only).
            acc: AbstractBitMap = pos[0][0]
            k, est = 1, float(len(acc))
            while k < len(pos) and est * len(pos[k][0]) / n * DENSE_FRACTION >= n:
                est = est * len(pos[k][0]) / n
                # clause results are shared: only the fresh ``_and`` result is mutated
                acc = _and(acc, pos[1][0]) if k == 1 else _iand(acc, pos[k][0])
                k += 1
            if k < len(pos):  # the result is sparse: keep its complement, built dense
                comp = BitMap(universe, optimize=False)  # full runs: a cheap copy to mutate
                comp -= acc
                for _, c in pos[k:]:
                    comp |= evaluate_shared(Not(c), index, memo)
                for c in neg_rules:
                    comp |= evaluate_shared(c, index, memo)
                return Form(comp, True)
            negs = [evaluate_shared(c, index, memo) for c in neg_rules]
            return _choose(acc - union_all(negs) if negs else acc, universe)
    return _choose(evaluate_shared(rule, index, memo), universe)


def _choose(bm: AbstractBitMap, universe: AbstractBitMap) -> Form:
    """Keep ``bm`` when dense or tiny; else its complement (bitsets, not arrays)."""
    n = len(universe)
    size = len(bm)
    if size * DENSE_FRACTION >= n or size * SPARSE_KEEP < n:
        return Form(bm, False)
    return Form(universe - bm, True)


def _and(a: AbstractBitMap, b: AbstractBitMap) -> AbstractBitMap:
    """``a & b`` as a mutable ``BitMap`` when either side is one (pyroaring returns the left
    operand's type; a ``FrozenBitMap`` result would make every later ``&=`` a new bitmap)."""
    return b & a if isinstance(b, BitMap) and not isinstance(a, BitMap) else a & b


def _iand(acc: AbstractBitMap, b: AbstractBitMap) -> AbstractBitMap:
    """``acc &= b``, in place when ``acc`` is mutable (only call it on a fresh result)."""
    acc &= b
    return acc


class _CallMemo(dict[Any, AbstractBitMap]):
    """Sub-expression results of one call (a ``Memo``: ``get`` and item assignment)."""


def overlap_counts(rules: Sequence[Rule], index: BitmapIndex, memo: Memo | None) -> list[list[int]]:
    """The N x N intersection matrix of ``rules`` (diagonal: each rule's size).

    Each rule is evaluated once, in ``dense_form``; sub-expressions (and clause complements)
    the rules have in common are evaluated once per call even without ``memo`` (a dict for
    this call)."""
    dense = getattr(index, "dense", None)  # a snapshot's own index (not a live overlay)
    if dense is not None:
        forms = [Form(*dense.form(r)) for r in rules]
        return overlap_matrix(forms, len(index.universe()))
    local: Memo = memo if memo is not None else _CallMemo()
    forms = [dense_form(r, index, local) for r in rules]
    return overlap_matrix(forms, len(index.universe()))
