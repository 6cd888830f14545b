"""The boolean-expression index: which live line items' rules can match these features.

Why: a request must not evaluate 10,000 rules. Each rule becomes DNF conjunctions
(``decision/dnf.py``); for every dimension the index keeps Roaring bitmaps over conjunction ids
so that one user value maps to the conjunctions whose literals on that dimension *fail*. A
request ORs one memoised fail set per dimension (dense int bitsets, ``decision/bits.py``) and
subtracts it from all conjunctions — a few C-level word loops, no per-line-item Python work.

Exactness: literals are decided per value class (a mentioned value, "another string", a numeric
interval between breakpoints, missing). Where a class cannot be decided exactly (a type the rule
did not expect, opaque literals, huge rules) the conjunction is *verified* with the per-user
evaluator (``rules.eval_python.compile_rule``), so the answer always equals evaluating every rule.

Line items are numbered in rank order (priority, -bid, id) and conjunction ``j`` of the item at
position ``p`` has id ``j * n + p``, so folding the layers gives positions in rank order and the
engine can stop after ``limit`` servable items.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import numpy as np
from pyroaring import BitMap

from adtarget.decision.bits import Matches, positions_list, to_bits
from adtarget.decision.dim_index import DimIndex, add_id
from adtarget.decision.dnf import Conjunction, TooManyConjunctions, to_conjunctions
from adtarget.decision.explain import Part, rule_parts
from adtarget.decision.models import LiveLineItem
from adtarget.rules.ast import SEGMENTS_FIELD, Rule, dimensions, segment_names
from adtarget.rules.eval_python import compile_rule

Matcher = Callable[[Mapping[str, Any]], bool]
Lookups = list[tuple[str, Callable[[Any], tuple[int, int]]]]
"""(dimension, its ``DimIndex.lookup_bits``) pairs."""
LAYERS_MAX = 8
"""Rules with more DNF conjunctions than this are evaluated directly (keeps id space ≤ 8n)."""


class Facts(NamedTuple):
    """Per-position constants the engine's walk reads instead of re-deriving them per request.

    ``lo <= now < hi`` (epoch seconds) is the intersection of both flights; ``slow`` means
    dayparting or a budget applies, so the full ``eligibility`` check must run; ``by_format``
    is the lowest creative id per ad format and ``any_creative`` the lowest overall
    (precomputed from ``LiveLineItem.creatives``, ids ascending per format).
    """

    lo: float
    hi: float
    slow: bool
    by_format: dict[str, int]
    any_creative: int | None


def _epoch(when: datetime | None, default: float) -> float:
    if when is None:
        return default
    return (when.replace(tzinfo=UTC) if when.tzinfo is None else when).timestamp()


def facts_of(item: LiveLineItem) -> Facts:
    """The ``Facts`` of one line item (built once per index)."""
    lo = max(_epoch(item.start, -math.inf), _epoch(item.campaign_start, -math.inf))
    hi = min(_epoch(item.end, math.inf), _epoch(item.campaign_end, math.inf))
    slow = item.dayparting is not None or not (
        item.budget_total is None
        and item.campaign_budget_total is None
        and item.campaign_budget_daily is None
    )
    by_format = {fmt: ids[0] for fmt, ids in item.creatives.items() if ids}
    return Facts(lo, hi, slow, by_format, min(by_format.values(), default=None))


def _reads(rule: Rule | None) -> frozenset[str]:
    """Feature keys a rule reads (list segments read ``SEGMENTS_FIELD``)."""
    if rule is None:
        return frozenset()
    extra = {SEGMENTS_FIELD} if segment_names(rule) else set()
    return dimensions(rule) | extra


def rank_order(items: Sequence[LiveLineItem]) -> tuple[LiveLineItem, ...]:
    """``items`` sorted by ``LiveLineItem.rank_key`` (priority, bid descending, id).

    Why numpy: ``sorted`` compares key tuples in C without ever releasing the GIL, which held
    every request thread for ~150 ms per rebuild at 100,000 line items; ``lexsort`` on three
    arrays takes ~20 ms for the same order (ties broken by id, so the order is total).
    """
    if len(items) < 2:
        return tuple(items)
    order = np.lexsort(
        (
            np.fromiter((it.id for it in items), np.int64, len(items)),
            -np.fromiter((it.bid_cpm for it in items), np.float64, len(items)),
            np.fromiter((it.priority for it in items), np.int64, len(items)),
        )
    )
    return tuple(items[i] for i in order.tolist())


class CompiledRule(NamedTuple):
    """What the index derives from one rule: its DNF conjunctions and the features it reads.

    More than ``LAYERS_MAX`` conjunctions (or a DNF too large to build) means the rule is
    evaluated directly on every request.
    """

    conjunctions: list[Conjunction]
    reads: frozenset[str]


def compile_item_rule(rule: Rule | None) -> CompiledRule:
    """Compile one line item's rule for the index (pure: same rule, same result)."""
    try:
        conjs = to_conjunctions(rule)  # [] = unsatisfiable: never matches
    except TooManyConjunctions:
        conjs = [Conjunction()] * (LAYERS_MAX + 1)
    return CompiledRule(conjs, _reads(rule))


class LineItemIndex:
    """An immutable index over live line items; build once, share across threads, swap whole."""

    def __init__(
        self,
        items: Sequence[LiveLineItem],
        *,
        version: str = "",
        not_live: Sequence[tuple[int, str, str]] = (),
        compiler: Callable[[Rule | None], CompiledRule] = compile_item_rule,
        facts: Callable[[LiveLineItem], Facts] = facts_of,
    ) -> None:
        """Build the index; ``compiler`` and ``facts`` may be memos (``RebuildCache``)."""
        self.version = version
        #: ``(line_item_id, reason, detail)`` of catalog line items outside the live set
        #: (status, no creative, unreadable): reported by ``explain`` only.
        self.not_live: tuple[tuple[int, str, str], ...] = tuple(not_live)
        self.items: tuple[LiveLineItem, ...] = rank_order(items)
        self.position_of: dict[int, int] = {it.id: p for p, it in enumerate(self.items)}
        n = len(self.items)
        compiled = [compiler(it.rule) for it in self.items]
        self.rule_dims: tuple[frozenset[str], ...] = tuple(c.reads for c in compiled)
        self.facts: tuple[Facts, ...] = tuple(facts(it) for it in self.items)
        self._matchers: list[Matcher | None] = [None] * n
        self._explain_parts: dict[int, list[Part]] = {}
        self._dims: dict[str, DimIndex] = {}
        self._all = BitMap()
        self._opaque = BitMap()
        self._verify_always: list[int] = []
        self._any_pending: list[tuple[DimIndex, int, int, frozenset[Any]]] = []
        per_item: list[tuple[int, list[Conjunction]]] = []
        for pos, (conjs, _) in enumerate(compiled):
            if len(conjs) > LAYERS_MAX:
                self._verify_always.append(pos)
                self._matcher(pos)
                continue
            per_item.append((pos, conjs))
        # conjunction j of the line item at position p gets id j * n + p ("layer" j), so
        # ``bits >> (j * n)`` maps a layer of surviving conjunctions back onto positions
        self._layers = max((len(c) for _, c in per_item), default=1) or 1
        for pos, conjs in per_item:
            for j, conj in enumerate(conjs):
                self._index_conjunction(j * n + pos, conj)
                if conj.opaque:
                    self._matcher(pos)
        space = n * self._layers
        for di, k, cid, vals in self._any_pending:
            lit = k * space + cid
            di.any_all_lits.add(lit)
            for v in vals:
                add_id(di.any_lits, v, lit)
        del self._any_pending
        for dim in self._dims.values():
            dim.finish(space)
            dim.finish_bits(space)
        self._lookups = [(d, di.lookup_bits) for d, di in self._dims.items()]
        self._n = n
        self._all_bits = to_bits(self._all)
        self._opaque_bits = to_bits(self._opaque)
        self._mask = (1 << n) - 1

    def _matcher(self, pos: int) -> Matcher:
        m = self._matchers[pos]
        if m is None:
            rule = self.items[pos].rule
            m = compile_rule(rule) if rule is not None else (lambda _f: True)
            self._matchers[pos] = m
        return m

    def _index_conjunction(self, cid: int, conj: Conjunction) -> None:
        self._all.add(cid)
        if conj.opaque:
            self._opaque.add(cid)
        for d in conj.dims():
            di = self._dims.get(d)
            if di is None:
                di = self._dims[d] = DimIndex()
            di.has_lit.add(cid)
        for d, vals in conj.pos_eq.items():
            di = self._dims[d]
            di.has_eq.add(cid)
            di.pos_eq_all.add(cid)
            for v in vals:
                add_id(di.pos_eq, v, cid)
        for d, vals in conj.neg_eq.items():
            di = self._dims[d]
            di.has_eq.add(cid)
            for v in vals:
                add_id(di.neg_eq, v, cid)
        for d, iv in conj.pos_num.items():
            self._dims[d].has_num.add(cid)
            self._dims[d].pos_num.append((cid, iv))
        for d, ivs in conj.neg_num.items():
            self._dims[d].has_num.add(cid)
            self._dims[d].neg_num.extend((cid, iv) for iv in ivs)
        for d, lists in conj.pos_any.items():
            di = self._dims[d]
            di.has_any.add(cid)
            di.pos_any_all.add(cid)
            di.any_slots = max(di.any_slots, len(lists))
            for k, vals in enumerate(lists):
                self._any_pending.append((di, k, cid, vals))
        for d, vals in conj.neg_any.items():
            di = self._dims[d]
            di.has_any.add(cid)
            for v in vals:
                add_id(di.neg_any, v, cid)
        for d in conj.must_miss:
            self._dims[d].must_miss.add(cid)
        for d in conj.must_have:
            self._dims[d].must_have.add(cid)

    def live_positions(self) -> Iterable[tuple[int, LiveLineItem]]:
        """``(position, item)`` of every line item the index serves (all of them here)."""
        return enumerate(self.items)

    def flat(self) -> LineItemIndex:
        """This index as one ``LineItemIndex`` (it is one)."""
        return self

    def explain_parts(self, pos: int) -> list[Part]:
        """The precompiled conjuncts of the rule at ``pos`` (built on first explain, kept)."""
        parts = self._explain_parts.get(pos)
        if parts is None:
            rule = self.items[pos].rule
            parts = self._explain_parts[pos] = rule_parts(rule) if rule is not None else []
        return parts

    def __len__(self) -> int:
        return len(self.items)

    @property
    def dimensions(self) -> frozenset[str]:
        """The dimensions any indexed rule reads."""
        return frozenset(self._dims)

    def match(self, features: Mapping[str, Any]) -> Matches:
        """Positions, ascending = rank order, of the line items whose rule holds for ``features``.

        Hot path: one memoised lookup per indexed dimension, ORs and one AND-NOT on int
        bitsets, one shift per conjunction layer, then the few undecided conjunctions checked
        with the per-user evaluator. Positions are produced lazily in rank order, so a request
        that needs ``limit`` line items does not pay for listing all matches.
        """
        fail = 0
        verify = 0
        get = features.get
        for d, lookup in self._lookups:
            f, v = lookup(get(d))
            fail |= f
            verify |= v
        return self.match_from(features, fail, verify)

    def split_lookups(self, keys: AbstractSet[str]) -> tuple[Lookups, Lookups]:
        """The per-dimension lookups as (dimensions not in ``keys``, those in it): for
        ``lookup_some`` + ``match_from``, which together are ``match``."""
        return (
            [(d, f) for d, f in self._lookups if d not in keys],
            [(d, f) for d, f in self._lookups if d in keys],
        )

    @staticmethod
    def lookup_some(features: Mapping[str, Any], lookups: Lookups) -> tuple[int, int]:
        """``(fail, verify)`` of ``features`` over some dimensions (``split_lookups``).

        Why split: the forecast matches each sampled user in several request contexts, and the
        dimensions no context carries give one answer per user (``decision/forecast_index.py``
        ORs them once per user, then only the context dimensions per request)."""
        fail = 0
        verify = 0
        get = features.get
        for d, lookup in lookups:
            f, v = lookup(get(d))
            fail |= f
            verify |= v
        return fail, verify

    def match_from(self, features: Mapping[str, Any], fail: int, verify: int) -> Matches:
        """``match`` once every dimension's lookup is ORed into ``fail`` and ``verify``."""
        verify |= self._opaque_bits
        all_bits = self._all_bits
        cand = all_bits ^ (all_bits & fail)  # all & ~fail without a negative int (bits.py)
        need = cand & verify
        if need:
            cand ^= need
        n, mask = self._n, self._mask
        hits = cand & mask
        for layer in range(1, self._layers):
            hits |= (cand >> (layer * n)) & mask
        for c in positions_list(need):
            pos = c % n
            if not (hits >> pos) & 1 and self._matcher(pos)(features):
                hits |= 1 << pos
        for pos in self._verify_always:
            if self._matcher(pos)(features):
                hits |= 1 << pos
        return Matches(hits)

    def match_ids(self, features: Mapping[str, Any]) -> set[int]:
        """Line item ids whose rule holds (for tests and benchmarks)."""
        items = self.items
        return {items[p].id for p in self.match(features)}


class DecisionIndex(Protocol):
    """What the engine reads of an index: a ``LineItemIndex``, or one patched in place
    (``decision/patched_index.py``). Positions index ``items``/``facts``/``rule_dims``;
    ``match`` yields them in rank order; ``live_positions`` lists the ones served."""

    @property
    def version(self) -> str: ...
    @property
    def items(self) -> Sequence[LiveLineItem]: ...
    @property
    def facts(self) -> Sequence[Facts]: ...
    @property
    def rule_dims(self) -> Sequence[frozenset[str]]: ...
    @property
    def not_live(self) -> Sequence[tuple[int, str, str]]: ...
    def __len__(self) -> int: ...
    def match(self, features: Mapping[str, Any]) -> Matches: ...
    def match_ids(self, features: Mapping[str, Any]) -> set[int]: ...
    def live_positions(self) -> Iterable[tuple[int, LiveLineItem]]: ...
    def explain_parts(self, pos: int) -> list[Part]: ...
    def flat(self) -> LineItemIndex: ...


def scan_match_ids(
    items: Sequence[LiveLineItem], features: Mapping[str, Any], matchers: Sequence[Matcher]
) -> set[int]:
    """The baseline: evaluate every line item's compiled rule (what the index must equal)."""
    return {it.id for it, m in zip(items, matchers, strict=True) if m(features)}
