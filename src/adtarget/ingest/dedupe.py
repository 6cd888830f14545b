"""Exact duplicate-id detection across the batches of one file, without a Python set of ids.

Why: a set of 10M Python strings costs seconds and ~1 GB. Instead every id is hashed to 64
bits (vectorized, ``audience.idhash``) and kept in 256 sorted numpy buckets by the hash's top
byte; a batch is checked with ``searchsorted`` per bucket and merged in with a stable sort
(timsort merges two sorted runs in linear time). A hash hit is only a *candidate*: the id
strings of candidates are compared exactly (against the earlier batches' id arrays), so a
64-bit collision can never reject a good row. Python loops only over candidates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from adtarget.audience.idhash import hash_ids

BUCKET_BITS = 8


class SeenIds:
    """Remembers every id offered so far; ``offer`` flags the ones seen before."""

    def __init__(self) -> None:
        self._buckets: list[npt.NDArray[np.uint64]] = [
            np.zeros(0, dtype=np.uint64) for _ in range(1 << BUCKET_BITS)
        ]
        self._chunks: list[pa.Array] = []
        self._shift = np.uint64(64 - BUCKET_BITS)
        self.count = 0

    def offer(self, ids: pa.Array) -> npt.NDArray[np.bool_]:
        """For non-null string ``ids`` (in file order): True where the id occurred earlier
        (in an earlier batch or earlier in this one). All of them are remembered."""
        return self.offer_hashed(ids)[0]

    def clear(self) -> None:
        """Forget every id (frees the buckets and the kept id arrays once a file is read)."""
        self._buckets = [np.zeros(0, dtype=np.uint64) for _ in self._buckets]
        self._chunks = []
        self.count = 0

    def offer_hashed(self, ids: pa.Array) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint64]]:
        """``offer``, and the ``idhash.hash_ids`` of the ids: the snapshot's lookup keys, so
        the builder need not hash the ids a second time."""
        n = len(ids)
        dup = np.zeros(n, dtype=bool)
        if n == 0:
            return dup, np.zeros(0, dtype=np.uint64)
        hashes = hash_ids(ids.cast(pa.large_string()))  # kept as given: int32 offsets are half
        hs = np.sort(hashes)
        same = hs[1:] == hs[:-1]
        hit_values = [hs[1:][same]] if same.any() else []
        bounds = self._bounds(hs)
        for k in np.flatnonzero(np.diff(bounds)).tolist():
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            part, old = hs[lo:hi], self._buckets[k]
            if len(old):
                pos = np.minimum(np.searchsorted(old, part), len(old) - 1)
                hit = old[pos] == part
                if hit.any():
                    hit_values.append(part[hit])
                merged = np.concatenate([old, part])
                merged.sort(kind="stable")
                self._buckets[k] = merged
            else:
                self._buckets[k] = part.copy()
        if hit_values:  # rare: map the colliding hash values back to rows, compare strings
            self._resolve(ids, np.isin(hashes, np.concatenate(hit_values)), dup)
        self._chunks.append(ids)
        self.count += n
        return dup, hashes

    def _bounds(self, hs: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        top = (hs >> self._shift).astype(np.int64)
        return np.searchsorted(top, np.arange((1 << BUCKET_BITS) + 1)).astype(np.int64)

    def _resolve(
        self, ids: pa.Array, candidate: npt.NDArray[np.bool_], dup: npt.NDArray[np.bool_]
    ) -> None:
        """Exact check of hash candidates (the only per-row Python loop, over candidates)."""
        rows = np.flatnonzero(candidate)
        values: list[Any] = ids.take(pa.array(rows)).to_pylist()
        earlier: set[Any] = set()
        if self._chunks:
            wanted = sorted(set(values))
            for chunk in self._chunks:
                probe = pa.array(wanted, chunk.type)
                found = chunk.filter(pc.is_in(chunk, value_set=probe))
                earlier.update(found.to_pylist())
        local: set[Any] = set()
        for r, v in zip(rows.tolist(), values, strict=True):
            if v in earlier or v in local:
                dup[r] = True
            local.add(v)
