"""A rule as a tree of dense ``Term``s over one snapshot's stored bitmaps (see ``dense``).

Same meaning as ``rules.eval_bitmap`` (polarity, ``and``/``or``/``not``, every leaf), so its
counts equal the Roaring evaluator's; the equality tests run both on generated data. Each leaf
is a stored bitmap of the snapshot (its dense words cached per snapshot) or, where the layout
computes it (a bit-sliced range, a few ranks of a many-valued number, a segment), a computed
bitmap: sparse ones are scattered per block, dense ones expanded once per call.

Numbers by layout: range-encoded (few values) — one stored ``rank <= hi`` minus one ``rank <=
lo - 1``; buckets — the cumulative bitmaps at two bucket ends, with the few ranks at the edges
added or removed as sparse members; bit-sliced — Roaring's range, then expanded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from pyroaring import AbstractBitMap, FrozenBitMap

from adtarget.audience import dense, numbers
from adtarget.audience.dense import AndNot, Leaf, Or, Sparse, Term
from adtarget.rules.ast import (
    And,
    Between,
    Compare,
    HasAll,
    HasAny,
    InList,
    IsMissing,
    Rule,
    SegmentRef,
    Value,
)
from adtarget.rules.ast import (
    Or as OrRule,
)
from adtarget.rules.eval_bitmap import polarity, split

# ``audience.index`` builds a ``DenseIndex``: its readers are typed loosely to keep one way.
DimReader = Any
SnapshotIndex = Any

SPARSE_SHARE = 512
"""A bitmap with fewer members than 1/512 of the ordinals is scattered per block (a member
costs ~10 ns) rather than read as words (1.25 MB per 10M users, ~0.06 ms)."""
DENSE_FRACTION = 16
"""At least 1/16 of the users: Roaring keeps the containers as bitsets (see ``sizing``)."""
DENSE_MIN_READS = 3
"""Fewer dense operands than this: Roaring's own cardinality calls are as fast (one bitset
pass, no result built), unless it must build a difference first."""


def _or(parts: Sequence[Term | None]) -> Term | None:
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else Or(kept)


class _Seen(NamedTuple):
    """A clause asked once (``DenseIndex._clause``): kept on its next use; costs no words."""

    nbytes: int = 0


SEEN = _Seen()


class KeptWords(NamedTuple):
    """A clause's words kept in a snapshot's ``ResultCache`` (``size``: an upper bound)."""

    words: dense.Words
    size: int

    @property
    def nbytes(self) -> int:
        return int(self.words.nbytes)


def _and(pos: Sequence[Term | None], neg: Sequence[Term | None] = ()) -> Term | None:
    if any(p is None for p in pos):
        return None
    keep_pos = [p for p in pos if p is not None]
    keep_neg = [n for n in neg if n is not None]
    if len(keep_pos) == 1 and not keep_neg:
        return keep_pos[0]
    return AndNot(keep_pos, keep_neg)


class DenseIndex:
    """Rule → ``Term`` over a ``SnapshotIndex``; the dense words of stored bitmaps cached."""

    def __init__(self, index: SnapshotIndex, num_ordinals: int, cache: dense.DenseCache) -> None:
        self.index = index
        self.nwords = (num_ordinals + 63) // 64
        self.cache = cache
        self.users = len(index.universe())
        self._ucards: npt.NDArray[np.int64] | None = None

    # ---- leaves -------------------------------------------------------------------------
    def stored(self, reader: DimReader, i: int) -> Term | None:
        """The i-th stored bitmap of a dimension."""
        bm = reader.bitmap(i)
        size = len(bm)
        if size == 0:
            return None
        if size * SPARSE_SHARE < self.nwords * 64:
            return Sparse(np.asarray(bm.to_array(), dtype=np.uint32))
        nwords = self.nwords
        return self._kept(
            (reader.slot, i),
            lambda: dense.words_from_serialized(reader.raw(i), nwords),
            size,
            made=False,
        )

    def _kept(
        self, key: Any, make: Callable[[], dense.Words], size: int, made: bool = True
    ) -> Leaf:
        """A leaf whose words are made once per snapshot (``make``) and kept in the cache; its
        complement within the universe is one too, made on first negated use."""
        leaf = Leaf(lambda: self.cache.get(key, make), size)
        leaf.made = made
        leaf.complement = lambda: self._complement(key, leaf, size)
        return leaf

    def _complement(self, key: Any, leaf: Leaf, size: int) -> Leaf:
        u = self.universe()
        assert u is not None  # a non-empty leaf: the universe holds it
        nwords = self.nwords
        return self._kept(
            (key, "not"), lambda: dense.materialize(AndNot([u], [leaf]), nwords), self.users - size
        )

    def computed(self, bm: AbstractBitMap | None) -> Term | None:
        """A bitmap computed for this call (not cached)."""
        if bm is None or not bm:
            return None
        size = len(bm)
        if size * SPARSE_SHARE < self.nwords * 64:
            return Sparse(np.asarray(bm.to_array(), dtype=np.uint32))
        return Leaf(lambda: dense.words_of(bm, self.nwords), size)

    def universe(self) -> Term | None:
        u = self.index.universe()
        if not u:
            return None
        nwords = self.nwords
        key = ("", "universe")
        leaf = Leaf(lambda: self.cache.get(key, lambda: dense.words_of(u, nwords)), len(u))
        leaf.universe = True
        return leaf

    def _and(self, pos: Sequence[Term | None], neg: Sequence[Term | None] = ()) -> Term | None:
        """``_and``, with each negated kept leaf read as its kept complement (one AND pass
        instead of an invert and an AND), unless the universe is what is being cut from."""
        if any(p is None or p.universe for p in pos):
            return _and(pos, neg)
        plain: list[Term | None] = []
        more = list(pos)
        for n in neg:
            if isinstance(n, Leaf) and n.complement is not None:
                more.append(n.complement())
            else:
                plain.append(n)
        return _and(more, plain)

    # ---- the rule -----------------------------------------------------------------------
    def term(self, rule: Rule, memo: Any = None) -> Term | None:
        """``rule`` as a term (``None``: matches nobody). With ``memo`` (a snapshot's
        ``ResultCache``) the words of each clause of a top-level ``and`` are kept there, so a
        rule edited in one clause reads the other clauses' results (one array each)."""
        negated, core = polarity(rule)
        if memo is not None and isinstance(core, And):
            pos, neg = split(core.children)
            p = [self._clause(c, memo) for c in pos] if pos else [self.universe()]
            t = self._and(p, [self._clause(c, memo) for c in neg])
        else:
            t = self._positive(core)
        return _and([self.universe()], [t]) if negated else t

    def _clause(self, rule: Rule, memo: Any) -> Term | None:
        """One clause of a top-level ``and``: its kept words, or its term, kept from the
        clause's second use on (``SEEN`` marks the first).

        Why not keep every clause at once: an audience builder's edit makes one new clause per
        keystroke, mostly never asked again, and each kept array is fresh memory (1.25 MB per
        10M users) that the process grows by — on this VM growing costs ≈ 0.8 ms per MB
        against ≈ 0.06 ms to read the same words, and at 100M users it was most of an edited
        rule's time. Inline, the new clause is read from its operands within the count."""
        key = (KeptWords, rule)
        hit = memo.get(key)
        if isinstance(hit, KeptWords):
            leaf = Leaf(lambda: hit.words, hit.size)
            leaf.made = True
            return leaf
        t = self._positive(rule)
        if not isinstance(t, Or | AndNot):
            return t  # one stored or kept bitmap already
        if hit is not SEEN:
            memo[key] = SEEN
            return t
        nwords, term = self.nwords, t

        def make() -> dense.Words:
            words = dense.materialize(term, nwords)
            words.setflags(write=False)
            memo[key] = KeptWords(words, term.upper)
            return words

        leaf = Leaf(make, t.upper)
        leaf.made = True
        return leaf

    def _positive(self, rule: Rule) -> Term | None:
        if isinstance(rule, And):
            pos, neg = split(rule.children)
            p = [self._positive(c) for c in pos] if pos else [self.universe()]
            return self._and(p, [self._positive(c) for c in neg])
        if isinstance(rule, OrRule):
            pos, neg = split(rule.children)
            if neg:  # a or not b = not (b and not a): the universe is never read
                inner = _and([self._positive(c) for c in neg], [self._positive(c) for c in pos])
                return _and([self.universe()], [inner])
            return _or([self._positive(c) for c in pos])
        if isinstance(rule, Compare):
            if rule.op in ("=", "!="):
                return self._eq(rule.dim, rule.value)
            v = float(rule.value)
            lo, hi, li, hinc = {
                "<": (None, v, True, False),
                "<=": (None, v, True, True),
                ">": (v, None, False, True),
                ">=": (v, None, True, True),
            }[rule.op]
            return self._range(rule.dim, lo, hi, li, hinc)
        if isinstance(rule, Between):
            return self._range(rule.dim, float(rule.low), float(rule.high), True, True)
        if isinstance(rule, InList):
            return _or([self._eq(rule.dim, v) for v in rule.values])
        if isinstance(rule, HasAny):
            return _or([self._contains(rule.dim, str(v)) for v in rule.values])
        if isinstance(rule, HasAll):
            return _and([self._contains(rule.dim, str(v)) for v in rule.values])
        if isinstance(rule, IsMissing):  # the positive core: "is not missing" = present
            reader = self.index.dim(rule.dim)
            return None if reader is None else self.stored(reader, reader.present_index)
        if isinstance(rule, SegmentRef):
            return self.computed(self.index.segment(rule.name))
        raise TypeError(f"no dense evaluation for {type(rule).__name__}")

    def _eq(self, dim: str, value: Value) -> Term | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self._range(dim, float(value), float(value), True, True)
        reader = self.index.dim(dim)
        if reader is None or reader.type == "number":
            return None
        return self._contains(dim, value)

    def _contains(self, dim: str, value: Any) -> Term | None:
        reader = self.index.dim(dim)
        if reader is None:
            return None
        code = reader.code_of(value)
        return None if code is None else self.stored(reader, code)

    def _range(
        self, dim: str, low: float | None, high: float | None, li: bool, hinc: bool
    ) -> Term | None:
        reader = self.index.dim(dim)
        if reader is None:
            return None
        bounds = reader.rank_bounds(low, high, li, hinc)
        if bounds is None:
            return None
        lo, hi = bounds
        if lo <= 0:
            return self._le(reader, hi)
        ge = self._ge(reader, lo)
        return ge if hi >= reader.num_values - 1 else _and([self._le(reader, hi), ge])

    def _le(self, reader: DimReader, c: int) -> Term | None:
        """``rank <= c``: a stored bitmap (range-encoded; a bucket end), else made once from
        the layout's own range and kept (range encoding materialized where a query asked)."""
        nb = reader.numbers
        assert nb is not None
        if c >= nb.k - 1:
            return self.stored(reader, reader.present_index)
        if isinstance(nb, numbers.RangeEncoded):
            return self.stored(reader, nb.le_index(c))
        if isinstance(nb, numbers.BucketedEquality) and c in nb.ends:
            return self.stored(reader, nb.cum_index(c))
        nwords = self.nwords
        return self._kept(
            (reader.slot, "le", c), lambda: dense.words_of(nb.range(0, c), nwords), self.users
        )

    def _ge(self, reader: DimReader, lo: int) -> Term | None:
        """``rank >= lo`` (``lo`` > 0): present minus ``rank <= lo - 1``, made once and kept,
        so a range is one AND of two kept bitmaps and an open range is one read."""
        present = self.stored(reader, reader.present_index)
        below = self._le(reader, lo - 1)
        if present is None:
            return None
        term = _and([present], [below])
        if term is None or not isinstance(term, AndNot):
            return term
        nwords = self.nwords
        return self._kept(
            (reader.slot, "ge", lo), lambda: dense.materialize(term, nwords), present.upper
        )

    def count(self, rule: Rule, memo: Any = None) -> int | None:
        """The count of ``rule`` when dense evaluation pays; ``None``: leave it to Roaring.

        A complement (``not x``, ``a or not b``) is counted as the users minus what it leaves
        out (every stored bitmap lies within the universe), so the universe is never read."""
        t = self.term(rule, memo)
        if t is None:
            return 0
        if isinstance(t, AndNot) and t.neg and len(t.pos) == 1 and t.pos[0].universe:
            inner = t.neg[0] if len(t.neg) == 1 else Or(t.neg)
            return self.users - dense.count(inner, self.nwords) if _pays(inner) else None
        if not _pays(t) or t.upper * 64 < self.users:
            return None
        return dense.count(t, self.nwords)

    def form(self, rule: Rule) -> tuple[FrozenBitMap, bool]:
        """``rule``'s result for the overlap matrix as ``(bitmap, negated)``: its members when
        dense, else the users it leaves out — so Roaring keeps it as bitset containers, made
        from the words as they are, and every cell is one bitset-by-bitset
        ``intersection_cardinality`` (AND and popcount fused, nothing built: the fastest
        pairwise count here, ~0.08 ms on 10M users)."""
        t = self.term(rule)
        if t is None:
            return FrozenBitMap(), False
        image = dense.BitsetImage(self.nwords)
        words = dense.materialize(t, self.nwords, image.words)
        cards = image.cards()
        if int(cards.sum()) * DENSE_FRACTION < self.users:
            u = self.universe()
            assert u is not None
            # the result lies within the universe: its complement there is one XOR
            np.bitwise_xor(u.block(0, self.nwords, []), words, out=words)
            return image.bitmap(self._universe_cards() - cards), True
        return image.bitmap(cards), False

    def _universe_cards(self) -> npt.NDArray[np.int64]:
        """Users per 65,536 ordinals (one popcount, kept)."""
        if self._ucards is None:
            image = dense.BitsetImage(self.nwords)
            u = self.universe()
            if u is not None:
                image.words[:] = u.block(0, self.nwords, [])
            self._ucards = image.cards()
        return self._ucards


def _pays(t: Term) -> bool:
    """Dense evaluation beats Roaring's cardinality calls: three dense operands or more, or
    anything Roaring has to build before counting it (a range bound, a difference)."""
    if t.reads >= DENSE_MIN_READS or t.made:
        return True
    return t.reads == 2 and isinstance(t, AndNot) and bool(t.neg)
