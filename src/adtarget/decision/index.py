"""The boolean-expression index: which live line items' rules can match these features.

Why: a request must not evaluate 10,000 rules. Each rule becomes DNF conjunctions
(``decision/dnf.py``); for every dimension the index keeps Roaring bitmaps over conjunction ids
so that one user value maps to the conjunctions whose literals on that dimension *fail*. A
request ORs ~one bitmap per dimension and subtracts it from all conjunctions — C-speed work
whose cost does not grow with the number of line items that cannot match.

Exactness: literals are decided per value class (a mentioned value, "another string", a numeric
interval between breakpoints, missing). Where a class cannot be decided exactly (a type the rule
did not expect, opaque literals, huge rules) the conjunction is *verified* with the per-user
evaluator (``rules.eval_python.compile_rule``), so the answer always equals evaluating every rule.

Line items are numbered in rank order (priority, -bid, id), so a match bitmap iterates in rank
order and the engine can stop after ``limit`` servable items.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from pyroaring import BitMap

from adtarget.decision.bits import Matches, positions_list, to_bits
from adtarget.decision.dnf import Conjunction, Interval, TooManyConjunctions, to_conjunctions
from adtarget.decision.models import LiveLineItem
from adtarget.rules.ast import SEGMENTS_FIELD, Rule, dimensions, segment_names
from adtarget.rules.eval_python import compile_rule

Matcher = Callable[[Mapping[str, Any]], bool]
_EMPTY = BitMap()
_OTHER = object()  # class key for a value no rule mentions
_SET_TYPES = (frozenset, set, list, tuple)
FAST_MAX = 65_536  # memoised plain values per dimension and type
LAYERS_MAX = 8
"""Rules with more DNF conjunctions than this are evaluated directly (keeps id space ≤ 8n)."""


@dataclass(slots=True)
class _DimIndex:
    """Per-dimension bitmaps over conjunction ids (see module docstring)."""

    has_lit: BitMap = field(default_factory=BitMap)
    has_eq: BitMap = field(default_factory=BitMap)
    has_num: BitMap = field(default_factory=BitMap)
    has_any: BitMap = field(default_factory=BitMap)
    pos_eq_all: BitMap = field(default_factory=BitMap)
    pos_eq: dict[Any, BitMap] = field(default_factory=dict)
    neg_eq: dict[Any, BitMap] = field(default_factory=dict)
    pos_num: list[tuple[int, Interval]] = field(default_factory=list)
    neg_num: list[tuple[int, Interval]] = field(default_factory=list)
    pos_any_all: BitMap = field(default_factory=BitMap)
    any_lits: dict[Any, BitMap] = field(default_factory=dict)  # value -> has-any literal ids
    any_all_lits: BitMap = field(default_factory=BitMap)
    any_slots: int = 0
    any_ranges: list[tuple[BitMap, int]] = field(default_factory=list)
    neg_any: dict[Any, BitMap] = field(default_factory=dict)
    must_miss: BitMap = field(default_factory=BitMap)
    must_have: BitMap = field(default_factory=BitMap)
    breaks: list[float] = field(default_factory=list)
    num_fail: list[BitMap] = field(default_factory=list)
    pos_num_all: BitMap = field(default_factory=BitMap)
    fail_missing: BitMap = field(default_factory=BitMap)
    fail_empty_set: BitMap = field(default_factory=BitMap)
    verify_set: BitMap = field(default_factory=BitMap)
    verify_scalar_nonnum: BitMap = field(default_factory=BitMap)
    cache: dict[Any, tuple[BitMap, BitMap]] = field(default_factory=dict)
    fast: dict[type, dict[Any, tuple[BitMap, BitMap]]] = field(
        default_factory=lambda: {str: {}, int: {}, float: {}}
    )
    fast_bits: dict[type, dict[Any, tuple[int, int]]] = field(
        default_factory=lambda: {str: {}, int: {}, float: {}, bool: {}, type(None): {}}
    )
    bits: dict[str, Any] = field(default_factory=dict)  # int forms for ``_set_bits``

    def finish(self, space: int) -> None:
        """Precompute numeric classes and the bitmaps for missing / empty-set values.

        ``space`` bounds conjunction ids: has-any literal ``k`` of conjunction ``c`` has the
        literal id ``k * space + c``, so one union over the user's set values finds every
        satisfied literal, and a shift maps failing literals back to their conjunctions.
        """
        self.any_ranges = [
            (BitMap(range(k * space, (k + 1) * space)), -k * space)
            for k in range(1, self.any_slots)
        ]
        for c, _ in self.pos_num:
            self.pos_num_all.add(c)
        points: set[float] = set()
        for _, iv in self.pos_num + self.neg_num:
            points.update(p for p in (iv.lo, iv.hi) if math.isfinite(p))
        points.update(float(v) for v in self.pos_eq if _is_num(v))
        points.update(float(v) for v in self.neg_eq if _is_num(v))
        self.breaks = sorted(points)
        self._build_num_classes()
        self.fail_missing = self.pos_eq_all | self.pos_num_all | self.pos_any_all | self.must_have
        self.fail_empty_set = self.pos_any_all | self.must_have
        self.verify_set = self.has_eq | self.has_num
        self.verify_scalar_nonnum = self.has_num | self.has_any

    def _class_range(self, iv: Interval) -> tuple[int, int]:
        m = len(self.breaks)
        if iv.lo == -math.inf:
            lo = 0
        else:
            i = bisect_left(self.breaks, iv.lo)
            lo = 2 * i + 1 if iv.lo_incl else 2 * i + 2
        if iv.hi == math.inf:
            hi = 2 * m
        else:
            j = bisect_left(self.breaks, iv.hi)
            hi = 2 * j + 1 if iv.hi_incl else 2 * j
        return lo, hi

    def _build_num_classes(self) -> None:
        if not self.pos_num and not self.neg_num:
            return
        k = 2 * len(self.breaks) + 1
        by_lo: list[list[int]] = [[] for _ in range(k + 1)]
        by_hi: list[list[int]] = [[] for _ in range(k + 1)]
        neg: list[list[int]] = [[] for _ in range(k)]
        for c, iv in self.pos_num:
            lo, hi = self._class_range(iv)
            by_lo[lo].append(c)
            by_hi[hi].append(c)
        for c, iv in self.neg_num:
            lo, hi = self._class_range(iv)
            for cls in range(max(lo, 0), min(hi, k - 1) + 1):
                neg[cls].append(c)
        above: list[BitMap] = [BitMap()] * k  # conjunctions whose interval starts above class
        cur = BitMap()
        for cls in range(k - 1, -1, -1):
            above[cls] = cur
            cur = cur | BitMap(by_lo[cls])
        fails: list[BitMap] = []
        below = BitMap()  # conjunctions whose interval ends below class
        for cls in range(k):
            fails.append(above[cls] | below | BitMap(neg[cls]))
            below = below | BitMap(by_hi[cls])
        self.num_fail = fails

    def num_class(self, v: Any) -> int:
        """Class of a number: 2i+1 = exactly breakpoint i, 2i = strictly below breakpoint i."""
        i = bisect_left(self.breaks, v)
        if i < len(self.breaks) and self.breaks[i] == v:
            return 2 * i + 1
        return 2 * i

    def lookup(self, v: Any) -> tuple[BitMap, BitMap]:
        """``(fail, verify)``: conjunctions whose literals on this dim fail / are undecided.

        Plain ``str``/``int``/``float`` values hit a per-type memo first (bounded), so the hot
        path is one dict lookup per dimension.
        """
        t = type(v)
        fast = self.fast.get(t)
        if fast is not None:
            hit = fast.get(v)
            if hit is None:
                hit = self._lookup(v)
                if len(fast) < FAST_MAX and v == v:
                    fast[v] = hit
            return hit
        return self._lookup(v)

    def _lookup(self, v: Any) -> tuple[BitMap, BitMap]:
        if v is None:
            return self.fail_missing, _EMPTY
        if isinstance(v, str):
            key: Any = ("s", v if (v in self.pos_eq or v in self.neg_eq) else _OTHER)
            hit = self.cache.get(key)
            if hit is None:
                hit = self._scalar(v, None, self.verify_scalar_nonnum)
                self.cache[key] = hit
            return hit
        if isinstance(v, bool):
            key = ("b", v)
            hit = self.cache.get(key)
            if hit is None:
                hit = self._scalar(v, None, self.verify_scalar_nonnum)
                self.cache[key] = hit
            return hit
        if isinstance(v, int | float) or (isinstance(v, Real) and not isinstance(v, bool)):
            if v != v or v in (math.inf, -math.inf):
                return _EMPTY, self.has_lit
            cls = self.num_class(v) if self.num_fail else -1
            key = ("n", v if (v in self.pos_eq or v in self.neg_eq) else _OTHER, cls)
            hit = self.cache.get(key)
            if hit is None:
                hit = self._scalar(v, self.num_fail[cls] if cls >= 0 else None, self.has_any)
                self.cache[key] = hit
            return hit
        if isinstance(v, _SET_TYPES):
            return self._set(v)
        return _EMPTY, self.has_lit

    def _scalar(self, v: Any, num_fail: BitMap | None, verify: BitMap) -> tuple[BitMap, BitMap]:
        fail = self.pos_eq_all - self.pos_eq.get(v, _EMPTY)
        fail |= self.neg_eq.get(v, _EMPTY)
        fail |= self.must_miss
        if num_fail is not None:
            fail |= num_fail
        return fail, verify - fail

    def finish_bits(self, space: int) -> None:
        """Int forms of what the set path needs (see ``decision/bits.py``)."""
        self.bits = {
            "space": space,
            "mask": (1 << space) - 1,
            "any_lits": {v: to_bits(b) for v, b in self.any_lits.items()},
            "any_all": to_bits(self.any_all_lits),
            "neg_any": {v: to_bits(b) for v, b in self.neg_any.items()},
            "must_miss": to_bits(self.must_miss),
            "fail_empty": to_bits(self.fail_empty_set),
            "verify_set": to_bits(self.verify_set),
            "has_lit": to_bits(self.has_lit),
        }

    def lookup_bits(self, v: Any) -> tuple[int, int]:
        """``lookup`` as ``(fail, verify)`` ints; memoised per type and value (bounded)."""
        memo = self.fast_bits.get(type(v))
        if memo is not None:
            hit = memo.get(v)
            if hit is None:
                fail, verify = self.lookup(v)
                hit = (to_bits(fail), to_bits(verify))
                if len(memo) < FAST_MAX and v == v:
                    memo[v] = hit
            return hit
        if isinstance(v, _SET_TYPES):
            return self._set_bits(v)
        fail, verify = self.lookup(v)
        return to_bits(fail), to_bits(verify)

    def _set_bits(self, values: Iterable[Any]) -> tuple[int, int]:
        """``_set`` on ints: one OR per user value, one shift per ``has all`` slot."""
        b = self.bits
        try:
            elems = set(values)
        except TypeError:
            return 0, b["has_lit"]
        if not elems:
            return b["fail_empty"], b["verify_set"]
        fail: int = b["must_miss"]
        if self.any_slots:
            lits = b["any_lits"]
            ok = 0
            for u in elems:
                hit = lits.get(u)
                if hit:
                    ok |= hit
            failing = b["any_all"] & ~ok
            space, mask = b["space"], b["mask"]
            fail |= failing & mask
            for k in range(1, self.any_slots):
                fail |= (failing >> (k * space)) & mask
        neg = b["neg_any"]
        for u in elems:
            hit = neg.get(u)
            if hit:
                fail |= hit
        return fail, b["verify_set"] & ~fail

    def _set(self, values: Iterable[Any]) -> tuple[BitMap, BitMap]:
        try:
            elems = set(values)
        except TypeError:
            return _EMPTY, self.has_lit
        if not elems:
            return self.fail_empty_set, self.verify_set
        fail = self.must_miss.copy()
        if self.any_slots:
            lits = self.any_lits
            ok = [lits[u] for u in elems if u in lits]
            failing = self.any_all_lits - _union(ok) if ok else self.any_all_lits
            # slot 0: literal id == conjunction id; ids >= space are harmless (not in `_all`)
            fail |= failing
            for rng, offset in self.any_ranges:
                fail |= (failing & rng).shift(offset)
        bad = [self.neg_any[u] for u in elems if u in self.neg_any]
        if bad:
            fail |= _union(bad)
        return fail, self.verify_set - fail


def _reads(rule: Rule | None) -> frozenset[str]:
    """Feature keys a rule reads (list segments read ``SEGMENTS_FIELD``)."""
    if rule is None:
        return frozenset()
    extra = {SEGMENTS_FIELD} if segment_names(rule) else set()
    return dimensions(rule) | extra


def _union(bitmaps: list[BitMap]) -> BitMap:
    """OR of a non-empty list (chained ``|`` beats ``BitMap.union(*...)`` for a few operands)."""
    if len(bitmaps) == 1:
        return bitmaps[0]
    out = bitmaps[0] | bitmaps[1]
    for b in bitmaps[2:]:
        out |= b
    return out


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _add(table: dict[Any, BitMap], key: Any, cid: int) -> None:
    bm = table.get(key)
    if bm is None:
        table[key] = bm = BitMap()
    bm.add(cid)


class LineItemIndex:
    """An immutable index over live line items; build once, share across threads, swap whole."""

    def __init__(
        self,
        items: Sequence[LiveLineItem],
        *,
        version: str = "",
        not_live: Sequence[tuple[int, str, str]] = (),
    ) -> None:
        self.version = version
        #: ``(line_item_id, reason, detail)`` of catalog line items outside the live set
        #: (status, no creative, unreadable): reported by ``explain`` only.
        self.not_live: tuple[tuple[int, str, str], ...] = tuple(not_live)
        self.items: tuple[LiveLineItem, ...] = tuple(sorted(items, key=LiveLineItem.rank_key))
        self.position_of: dict[int, int] = {it.id: p for p, it in enumerate(self.items)}
        n = len(self.items)
        self.rule_dims: tuple[frozenset[str], ...] = tuple(_reads(it.rule) for it in self.items)
        self._matchers: list[Matcher | None] = [None] * n
        self._dims: dict[str, _DimIndex] = {}
        self._all = BitMap()
        self._opaque = BitMap()
        self._verify_always: list[int] = []
        self._any_pending: list[tuple[_DimIndex, int, int, frozenset[Any]]] = []
        per_item: list[tuple[int, list[Conjunction]]] = []
        for pos, item in enumerate(self.items):
            try:
                conjs = to_conjunctions(item.rule)  # [] = unsatisfiable: never matches
            except TooManyConjunctions:
                conjs = [Conjunction()] * (LAYERS_MAX + 1)
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
                _add(di.any_lits, v, lit)
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
                di = self._dims[d] = _DimIndex()
            di.has_lit.add(cid)
        for d, vals in conj.pos_eq.items():
            di = self._dims[d]
            di.has_eq.add(cid)
            di.pos_eq_all.add(cid)
            for v in vals:
                _add(di.pos_eq, v, cid)
        for d, vals in conj.neg_eq.items():
            di = self._dims[d]
            di.has_eq.add(cid)
            for v in vals:
                _add(di.neg_eq, v, cid)
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
                _add(di.neg_any, v, cid)
        for d in conj.must_miss:
            self._dims[d].must_miss.add(cid)
        for d in conj.must_have:
            self._dims[d].must_have.add(cid)

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
        verify = self._opaque_bits
        get = features.get
        for d, lookup in self._lookups:
            f, v = lookup(get(d))
            fail |= f
            verify |= v
        cand = self._all_bits & ~fail
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


def scan_match_ids(
    items: Sequence[LiveLineItem], features: Mapping[str, Any], matchers: Sequence[Matcher]
) -> set[int]:
    """The baseline: evaluate every line item's compiled rule (what the index must equal)."""
    return {it.id for it, m in zip(items, matchers, strict=True) if m(features)}
