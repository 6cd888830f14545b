"""Results of rule sub-expressions, kept per snapshot so an edited rule redoes only its edit.

Why: an audience builder sizes the rule again on every keystroke; with four of five clauses
unchanged, their bitmaps (and the AND of the unchanged part) are the same as a moment ago.
Keys are rule AST nodes (frozen dataclasses, so equal sub-expressions hit wherever they sit).

Scope and invalidation: one cache belongs to one ``Snapshot`` object, and a publish opens a new
snapshot (a new cache; the old one goes with the old snapshot). Anything that changes what a
snapshot answers without a publish — real-time delta bitmaps overlaid on it — must call
``invalidate()`` (``Snapshot.invalidate_results``) when its deltas change. Bounded by bytes,
least recently used first out.
"""

from __future__ import annotations

import threading
from typing import Any

from cachetools import LRUCache
from pyroaring import AbstractBitMap

DEFAULT_MAX_BYTES = 256 << 20


def bitmap_bytes(bm: AbstractBitMap) -> int:
    """Heap bytes of a bitmap's containers (plus a little for the object); a dense result
    (``dense_rules.KeptWords``) says its own."""
    nbytes = getattr(bm, "nbytes", None)
    if nbytes is not None:
        return 64 + int(nbytes)
    st: dict[str, Any] = bm.get_statistics()  # type: ignore[assignment]
    return 64 + int(
        st["n_bytes_array_containers"]
        + st["n_bytes_run_containers"]
        + st["n_bytes_bitset_containers"]
    )


class ResultCache:
    """``rule node -> bitmap``; results are shared, so nobody may mutate what ``get`` returns."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, *, stamp: int | None = None) -> None:
        self._lru: LRUCache[Any, tuple[AbstractBitMap, int]] = LRUCache(
            maxsize=max(1, max_bytes), getsizeof=lambda item: item[1]
        )
        self._lock = threading.Lock()
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self.stamp = stamp
        """With a stamp (a live view's number), each key remembers the stamp of its last use,
        so ``audience.carry`` brings only recently used results to the next view."""
        self.used: dict[Any, int] = {}

    def get(self, key: Any) -> AbstractBitMap | None:
        """The cached result of ``key``, or ``None``."""
        with self._lock:
            hit = self._lru.get(key)
            if hit is None:
                self.misses += 1
                return None
            self.hits += 1
            if self.stamp is not None:
                self.used[key] = self.stamp
            return hit[0]

    def peek(self, key: Any) -> AbstractBitMap | None:
        """The cached result of ``key`` without counting a hit or a miss (tests)."""
        with self._lock:
            hit = self._lru.get(key)
        return None if hit is None else hit[0]

    def __setitem__(self, key: Any, bm: AbstractBitMap) -> None:
        self.put(key, bm, self.stamp)

    def put(self, key: Any, bm: AbstractBitMap, used: int | None) -> None:
        """Keep ``bm`` as ``key``'s result, last used at stamp ``used`` (a carried result keeps
        the stamp of its last real use)."""
        size = bitmap_bytes(bm)
        if size > self._lru.maxsize:
            return
        with self._lock:
            self._lru[key] = (bm, size)
            if used is not None:
                self.used[key] = used

    def recent(self, since: int) -> list[tuple[Any, AbstractBitMap, int]]:
        """``(key, result, stamp)`` of every kept result last used at ``since`` or later,
        newest use first."""
        with self._lock:
            out = []
            for key, stamp in self.used.items():
                if stamp >= since:
                    hit = self._lru.get(key)
                    if hit is not None:
                        out.append((key, hit[0], stamp))
        out.sort(key=lambda item: -item[2])
        return out

    def invalidate(self) -> None:
        """Forget every result (the snapshot's answers changed: real-time deltas)."""
        with self._lock:
            self._lru.clear()
            self.used.clear()
            self.generation += 1

    @property
    def bytes(self) -> float:
        """Bytes held now."""
        return self._lru.currsize

    def __len__(self) -> int:
        return len(self._lru)
