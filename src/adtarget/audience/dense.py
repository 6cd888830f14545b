"""Dense bitsets: counting a rule over many dense clauses at the speed of reading them.

Why: on 10M users a typical clause (``country in (...)``, ``plan = ...``, ``age between ...``)
holds 5-50% of the users. Roaring keeps it as 153 bitset containers of 8 KB, and every Roaring
operation allocates a fresh 1.25 MB result (~0.2 ms here); a 5-clause rule is ~10 of them, plus
a dense-to-array conversion when the result turns sparse. Here each stored bitmap a rule reads
is also kept as one flat array of 64-bit words (numpy; 1.25 MB per 10M users, LRU-bounded per
snapshot), and a rule is a small tree of ``Term``s evaluated block by block (``BLOCK`` words per
operand, held in L2) with in-place numpy operations and ``np.bitwise_count``: no allocation per
call, every operand read once. The floor is reading the operands (~20 GB/s on this box).

Sparse parts (a few ranks of a many-valued number, a small segment) stay lists of members and
are scattered into the block they fall in (``Sparse``), so they cost per member, not per user.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache
from pyroaring import AbstractBitMap, FrozenBitMap

Words = npt.NDArray[np.uint64]

BLOCK = 16_384
"""Words per operand block: 128 KB, so the operands of a 5-clause rule stay in L2."""
DENSE_CACHE_BYTES = 768 << 20
"""Dense views kept per snapshot (1.25 MB each on 10M users: ~600 stored bitmaps)."""

_COOKIE_RUNS = 12347
_COOKIE_PLAIN = 12346
_NO_OFFSET_THRESHOLD = 4


def words_from_serialized(buf: bytes | memoryview | npt.NDArray[np.uint8], nwords: int) -> Words:
    """The dense words of a bitmap in Roaring's portable serialization (no Roaring call).

    Bitset containers are copied as they are; array and run containers are expanded per
    container. ``nwords`` must cover every member (``ceil(ordinals / 64)``).
    """
    b = np.frombuffer(buf, dtype=np.uint8)
    out = np.zeros(nwords, dtype=np.uint64)
    cookie = int(b[:4].view("<u4")[0])
    if cookie & 0xFFFF == _COOKIE_RUNS:
        size = (cookie >> 16) + 1
        pos = 4
        nflags = (size + 7) // 8
        runs = np.unpackbits(b[pos : pos + nflags], bitorder="little")[:size].astype(bool)
        pos += nflags
        has_offsets = size >= _NO_OFFSET_THRESHOLD
    elif cookie == _COOKIE_PLAIN:
        size = int(b[4:8].view("<u4")[0])
        pos = 8
        runs = np.zeros(size, dtype=bool)
        has_offsets = True
    else:
        raise ValueError(f"not a portable Roaring bitmap (cookie {cookie})")
    header = b[pos : pos + 4 * size].view("<u2").reshape(size, 2).astype(np.int64)
    pos += 4 * size + (4 * size if has_offsets else 0)
    keys, cards = header[:, 0], header[:, 1] + 1
    if size and int(keys[-1]) * 1024 >= nwords:
        raise ValueError("bitmap holds members past the ordinal space")
    view = out.view(np.uint8)
    for i in range(size):
        base = int(keys[i]) * 1024
        if runs[i]:
            nruns = int(b[pos : pos + 2].view("<u2")[0])
            pairs = b[pos + 2 : pos + 2 + 4 * nruns].view("<u2").reshape(nruns, 2)
            pos += 2 + 4 * nruns
            _set_runs(out, base, pairs)
        elif cards[i] > 4096:
            words = b[pos : pos + 8192].view("<u8")
            end = min(nwords, base + 1024)
            out[base:end] = words[: end - base]
            pos += 8192
        else:
            card = int(cards[i])
            vals = b[pos : pos + 2 * card].view("<u2")
            pos += 2 * card
            bits = np.zeros(65536, dtype=bool)
            bits[vals] = True
            packed = np.packbits(bits, bitorder="little")
            start = base * 8
            end = min(len(view), start + 8192)
            view[start:end] = packed[: end - start]
    return out


def _set_runs(out: Words, base: int, pairs: npt.NDArray[np.uint16]) -> None:
    """Set the bits of run container ``(start, length - 1)`` pairs at word ``base``.

    A loop over runs: a stored run container has few (``layout.compact_bitmap`` keeps runs only
    where they are 8x smaller), often one covering the whole container (the universe)."""
    bits = np.zeros(65536, dtype=np.uint8)
    for start, last in pairs.tolist():
        bits[start : start + last + 1] = 1
    packed = np.packbits(bits, bitorder="little").view("<u8")
    end = min(len(out), base + 1024)
    out[base:end] |= packed[: end - base]


def words_of(bm: AbstractBitMap, nwords: int) -> Words:
    """Dense words of any bitmap (through its portable serialization)."""
    return words_from_serialized(bm.serialize(), nwords)


class _Buffers(threading.local):
    """Per-thread scratch blocks, reused across calls (no allocation or page fault per call)."""

    def __init__(self) -> None:
        self.blocks: list[Words] = []
        self.counts = np.zeros(0, dtype=np.uint8)
        self.size = 0

    def take(self, n: int, nwords: int = 0) -> list[Words]:
        if self.size != BLOCK:
            self.blocks, self.size = [], BLOCK
        if len(self.counts) < nwords + 8:
            self.counts = np.zeros(nwords + 8, dtype=np.uint8)
        while len(self.blocks) < n:
            self.blocks.append(np.empty(BLOCK, dtype=np.uint64))
        return self.blocks


_buffers = _Buffers()


class Term:
    """One node of a dense evaluation: ``block(s, e, bufs)`` is its words ``s:e``.

    ``reads``: dense operands read per evaluation (the cost); ``upper``: a bound on its size.
    A block returned may be a view of stored words: callers never write into a child's block.
    """

    reads: int = 0
    upper: int = 0
    slot: int = -1
    universe: bool = False
    made: bool = False
    """Holds words Roaring would have to build first (a kept range bound, a complement)."""

    def block(self, s: int, e: int, bufs: list[Words]) -> Words:
        raise NotImplementedError

    def children(self) -> Sequence[Term]:
        return ()


class Leaf(Term):
    """Stored (or computed) dense words; ``get`` fetches them on first use."""

    def __init__(self, get: Callable[[], Words], size: int) -> None:
        self._get = get
        self._words: Words | None = None
        self.reads = 1
        self.upper = size
        self.complement: Callable[[], Leaf] | None = None

    def block(self, s: int, e: int, bufs: list[Words]) -> Words:
        w = self._words
        if w is None:
            w = self._words = self._get()
        return w[s:e]


class Sparse(Term):
    """Few members: word numbers and their bits, scattered into each block they fall in."""

    def __init__(self, members: npt.NDArray[np.uint32]) -> None:
        m = np.asarray(members, dtype=np.uint64)
        w = m >> np.uint64(6)
        bits = np.left_shift(np.uint64(1), m & np.uint64(63))
        starts = np.flatnonzero(np.r_[True, w[1:] != w[:-1]]) if len(w) else np.zeros(0, int)
        self._words = w[starts].astype(np.int64)
        self._bits = np.bitwise_or.reduceat(bits, starts) if len(w) else bits
        self.upper = len(m)

    def block(self, s: int, e: int, bufs: list[Words]) -> Words:
        out = bufs[self.slot][: e - s]
        out.fill(0)
        a, b = np.searchsorted(self._words, (s, e))
        if b > a:
            out[self._words[a:b] - s] = self._bits[a:b]
        return out


class Or(Term):
    """Union of two or more terms."""

    def __init__(self, parts: Sequence[Term]) -> None:
        self.parts = list(parts)
        self.reads = sum(p.reads for p in parts)
        self.made = any(p.made for p in parts)
        self.upper = sum(p.upper for p in parts)

    def children(self) -> Sequence[Term]:
        return self.parts

    def block(self, s: int, e: int, bufs: list[Words]) -> Words:
        out = bufs[self.slot][: e - s]
        p = self.parts
        np.bitwise_or(p[0].block(s, e, bufs), p[1].block(s, e, bufs), out=out)
        for t in p[2:]:
            np.bitwise_or(out, t.block(s, e, bufs), out=out)
        return out


class AndNot(Term):
    """Intersection of ``pos`` (one or more) minus the union of ``neg``."""

    def __init__(self, pos: Sequence[Term], neg: Sequence[Term] = ()) -> None:
        # the smallest first: its block is copied, the others only read
        self.pos = sorted(pos, key=lambda t: t.upper)
        self.neg = list(neg)
        self.reads = sum(t.reads for t in (*pos, *neg))
        self.made = any(t.made for t in (*pos, *neg))
        self.upper = min(t.upper for t in pos)

    def children(self) -> Sequence[Term]:
        return [*self.pos, *self.neg]

    def block(self, s: int, e: int, bufs: list[Words]) -> Words:
        out = bufs[self.slot][: e - s]
        pos = self.pos
        if len(pos) >= 2:
            np.bitwise_and(pos[0].block(s, e, bufs), pos[1].block(s, e, bufs), out=out)
        else:
            np.copyto(out, pos[0].block(s, e, bufs))
        for t in pos[2:]:
            np.bitwise_and(out, t.block(s, e, bufs), out=out)
        if self.neg:
            tmp = bufs[self.slot + 1][: e - s]
            for t in self.neg:
                np.invert(t.block(s, e, bufs), out=tmp)
                np.bitwise_and(out, tmp, out=out)
        return out


def _assign(term: Term, next_slot: int) -> int:
    """Give every computing node its own scratch block (AndNot takes two); returns the next."""
    for child in term.children():
        next_slot = _assign(child, next_slot)
    if isinstance(term, Sparse | Or):
        term.slot = next_slot
        return next_slot + 1
    if isinstance(term, AndNot):
        term.slot = next_slot
        return next_slot + 2
    return next_slot


def count(term: Term, nwords: int) -> int:
    """Members of ``term`` over words ``0..nwords-1``: popcounts of each evaluated block."""
    slots = _assign(term, 0)
    bufs = _buffers.take(slots, nwords)
    counts = _buffers.counts
    for s in range(0, nwords, BLOCK):
        e = min(nwords, s + BLOCK)
        np.bitwise_count(term.block(s, e, bufs), out=counts[s:e])
    return _sum_counts(counts, nwords)


_LOW_BYTES = np.uint64(0x00FF00FF00FF00FF)
_ADD_LANES = np.uint64(0x0001000100010001)


def _sum_counts(counts: npt.NDArray[np.uint8], n: int) -> int:
    """Sum of the first ``n`` per-word popcounts (each <= 64), eight at a time.

    Why not ``counts.sum()``: summing uint8 into a wide integer is a casting loop, as slow as
    the popcount itself; here the counts are read as uint64 lanes: even and odd bytes added
    (16-bit lanes <= 128), the four lanes folded by one multiply (<= 512), then summed."""
    m = (n + 7) // 8
    counts[n : m * 8] = 0
    v = counts[: m * 8].view(np.uint64)
    x = (v & _LOW_BYTES) + ((v >> np.uint64(8)) & _LOW_BYTES)
    return int(((x * _ADD_LANES) >> np.uint64(48)).sum())


def materialize(term: Term, nwords: int, out: Words | None = None) -> Words:
    """``term`` as one fresh array of words (for results that are used again).

    Its own scratch blocks: it may run lazily inside another evaluation on this thread (a
    kept leaf made on first read), whose blocks must not be overwritten."""
    if out is None:
        if isinstance(term, Leaf):
            return term.block(0, nwords, [])
        out = np.empty(nwords, dtype=np.uint64)
    slots = _assign(term, 0)
    bufs = [np.empty(BLOCK, dtype=np.uint64) for _ in range(slots)]
    for s in range(0, nwords, BLOCK):
        e = min(nwords, s + BLOCK)
        out[s:e] = term.block(s, e, bufs)
    return out


class DenseCache:
    """Dense words of stored bitmaps, per snapshot, LRU-bounded by bytes."""

    def __init__(self, max_bytes: int = DENSE_CACHE_BYTES) -> None:
        self._lru: LRUCache[Any, Words] = LRUCache(
            maxsize=max(1, max_bytes), getsizeof=lambda w: max(1, w.nbytes)
        )
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Words]) -> Words:
        with self._lock:
            hit = self._lru.get(key)
        if hit is None:
            hit = make()
            hit.setflags(write=False)
            if hit.nbytes <= self._lru.maxsize:
                with self._lock:
                    self._lru[key] = hit
        return hit

    @property
    def bytes(self) -> float:
        return self._lru.currsize


class BitsetImage:
    """Dense words laid out as Roaring's portable serialization of bitset containers, so a
    rule evaluated into ``words`` becomes a ``FrozenBitMap`` with one copy (``deserialize``),
    when every container holds over 4,096 members (else ``bitmap_of_words`` per container)."""

    def __init__(self, nwords: int) -> None:
        self.ncont = (nwords + 1023) // 1024
        self.head = 8 + 8 * self.ncont
        self.buf = np.zeros(self.head + 8192 * self.ncont, dtype=np.uint8)
        self.nwords = nwords
        self.words: Words = self.buf[self.head :].view(np.uint64)[:nwords]

    def cards(self) -> npt.NDArray[np.int64]:
        """Members per container."""
        full = self.buf[self.head :].view(np.uint64).reshape(self.ncont, 1024)
        out: npt.NDArray[np.int64] = np.bitwise_count(full).sum(axis=1, dtype=np.int64)
        return out

    def bitmap(self, cards: npt.NDArray[np.int64] | None = None) -> FrozenBitMap:
        """The bitmap of ``words`` (``cards``: its members per container, when known)."""
        if cards is None:
            cards = self.cards()
        if cards.min() <= 4096:
            return bitmap_of_words(self.words)
        meta = self.buf[: self.head].view("<u4")
        meta[0], meta[1] = _COOKIE_PLAIN, self.ncont
        head = self.buf[8 : 8 + 4 * self.ncont].view("<u2")
        head[0::2] = np.arange(self.ncont)
        head[1::2] = cards - 1
        offsets = self.buf[8 + 4 * self.ncont : self.head].view("<u4")
        offsets[:] = self.head + 8192 * np.arange(self.ncont, dtype=np.int64)
        return FrozenBitMap.deserialize(self.buf.data)  # type: ignore[arg-type]


def bitmap_of_words(words: Words) -> FrozenBitMap:
    """A Roaring bitmap of dense words, through the portable serialization: a container with
    over 4,096 members is its words as they are, a smaller one the positions of its bits
    (found in its non-zero words only). No per-member work for dense containers."""
    ncont = (len(words) + 1023) // 1024  # general: any mix of containers
    blocks = np.zeros((ncont, 1024), dtype=np.uint64)
    blocks.reshape(-1)[: len(words)] = words
    cards = np.bitwise_count(blocks).sum(axis=1, dtype=np.int64)
    keep = np.flatnonzero(cards)
    head = np.empty(2 * len(keep), dtype="<u2")
    head[0::2] = keep
    head[1::2] = cards[keep] - 1
    parts: list[bytes] = []
    sizes = np.empty(len(keep), dtype=np.int64)
    for j, k in enumerate(keep.tolist()):
        if cards[k] > 4096:
            parts.append(blocks[k].tobytes())
        else:
            parts.append(_positions(blocks[k]).tobytes())
        sizes[j] = len(parts[-1])
    offsets = 8 + 8 * len(keep) + np.concatenate(([0], np.cumsum(sizes)[:-1]))
    top = np.array([_COOKIE_PLAIN, len(keep)], dtype="<u4").tobytes()
    data = top + head.tobytes() + offsets.astype("<u4").tobytes() + b"".join(parts)
    return FrozenBitMap.deserialize(data)


def _positions(container: Words) -> npt.NDArray[np.uint16]:
    """Positions (0..65535) of the set bits of one container's 1,024 words, ascending."""
    nz = np.flatnonzero(container)
    bits = np.unpackbits(container[nz].view(np.uint8), bitorder="little").reshape(-1, 64)
    rows, cols = np.nonzero(bits)
    return ((nz[rows] << 6) | cols).astype("<u2")
