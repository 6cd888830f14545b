"""One dimension of the boolean-expression index: which conjunctions fail for a user's value.

Why its own module: this is the per-dimension half of ``decision/index.py`` — Roaring bitmaps
built once per index (positive/negative value tables, numeric classes between breakpoints,
``has any`` literal slots), and the request-time lookup that turns one feature value into
``(fail, verify)`` int bitsets (memoised; see ``decision/bits.py``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from pyroaring import BitMap

from adtarget.decision.bits import to_bits
from adtarget.decision.dnf import Interval

_EMPTY = BitMap()
_OTHER = object()  # class key for a value no rule mentions
_SET_TYPES = (frozenset, set, list, tuple)
FAST_MAX = 65_536  # memoised plain values per dimension and type


@dataclass(slots=True)
class DimIndex:
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
            # per ``has any`` slot k, in conjunction-id space: (k, ids) pairs per value
            "slot_lits": {
                v: _slots(to_bits(b), self.any_slots, space) for v, b in self.any_lits.items()
            },
            "slot_all": [
                ids
                for _, ids in _slots(to_bits(self.any_all_lits), self.any_slots, space, keep=True)
            ],
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
            lits = b["slot_lits"]
            ok = [0] * self.any_slots
            for u in elems:
                per = lits.get(u)
                if per:
                    for k, ids in per:
                        ok[k] |= ids
            for k, all_k in enumerate(b["slot_all"]):
                fail |= all_k ^ (all_k & ok[k])  # all_k & ~ok[k] (decision/bits.py)
        neg = b["neg_any"]
        for u in elems:
            hit = neg.get(u)
            if hit:
                fail |= hit
        verify: int = b["verify_set"]
        return fail, verify ^ (verify & fail)

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


def _slots(bits: int, slots: int, space: int, *, keep: bool = False) -> list[tuple[int, int]]:
    """Split literal-id bits (``k * space + cid``) into ``(k, cid bits)`` per slot."""
    mask = (1 << space) - 1
    out = [(k, (bits >> (k * space)) & mask) for k in range(slots)]
    return out if keep else [(k, ids) for k, ids in out if ids]


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


def add_id(table: dict[Any, BitMap], key: Any, cid: int) -> None:
    bm = table.get(key)
    if bm is None:
        table[key] = bm = BitMap()
    bm.add(cid)
