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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyroaring import AbstractBitMap, BitMap

from adtarget.rules.ast import And, Not, Rule
from adtarget.rules.eval_bitmap import BitmapIndex, Memo, count, evaluate_shared

# A clause counts as dense when it holds at least 1/16 of the users: Roaring keeps a container
# as a bitset above 4096 of 65536 values (1/16), so dense-by-dense results stay bitsets.
DENSE_FRACTION = 16


def count_rule(rule: Rule, index: BitmapIndex, memo: Memo | None = None) -> int:
    """Exact number of users matching ``rule`` (same answer as ``eval_bitmap.count``).

    With ``memo`` (a snapshot's ``ResultCache``), clause results are reused across calls."""
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
    acc: AbstractBitMap = head[0] & head[1] if len(head) >= 2 else BitMap(head[0], optimize=False)
    for bm in head[2:]:
        acc &= bm
    for bm in negs:
        acc -= bm
    if len(tail) == 1:
        return acc.intersection_cardinality(tail[0])
    a, b = tail
    both = acc.intersection_cardinality(a) + acc.intersection_cardinality(b)
    return both - acc.intersection_cardinality(a | b)


def overlap_matrix(bitmaps: Sequence[AbstractBitMap]) -> list[list[int]]:
    """Pairwise intersection sizes (diagonal: each bitmap's size), with
    ``intersection_cardinality`` so no bitmap is built."""
    n = len(bitmaps)
    out = [[0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            c = len(bitmaps[i]) if i == j else bitmaps[i].intersection_cardinality(bitmaps[j])
            out[i][j] = out[j][i] = int(c)
    return out


class _CallMemo(dict[Any, AbstractBitMap]):
    """Sub-expression results of one call (a ``Memo``: ``get`` and item assignment)."""


def overlap_counts(rules: Sequence[Rule], index: BitmapIndex, memo: Memo | None) -> list[list[int]]:
    """The N x N intersection matrix of ``rules`` (diagonal: each rule's size).

    Each rule is evaluated once (shared, not copied: nothing here mutates them); sub-expressions
    the rules have in common are evaluated once per call even without ``memo`` (a dict for this
    call)."""
    local: Memo = memo if memo is not None else _CallMemo()
    return overlap_matrix([evaluate_shared(r, index, local) for r in rules])
