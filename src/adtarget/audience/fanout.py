"""Answering an audience question over the shards of a sharded snapshot, and adding up.

Why a small interface with two implementations: the arithmetic is the same wherever the shards
are (a size is the sum of the shards' sizes, an overlap the element-wise sum of their matrices,
an export the concatenation of their user ids), only the place the per-shard work runs differs:
``LocalFanout`` runs it in this process over memory-mapped shards; the Ray backend
(``audience.ray_fanout``) runs it in shard hosts (several shards each) and raises
``ShardUnavailable`` naming the shard that did not answer in time. Either way a partial sum
is never returned.

The per-shard work itself is ``ShardWork``: plain functions of one ``Snapshot``, used by both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import pyarrow as pa
from pyroaring import AbstractBitMap

from adtarget.audience.sizing import count_rule, overlap_counts
from adtarget.audience.snapshot import Snapshot
from adtarget.rules.ast import Rule
from adtarget.rules.eval_bitmap import Memo, evaluate

EXPORT_CHUNK = 1_000_000


class ShardSet(Protocol):
    """What a fan-out needs of a sharded snapshot (``ShardedSnapshot``): its shards, opened."""

    @property
    def shards(self) -> list[Snapshot]: ...


class Fanout(Protocol):
    """Sizes, overlaps and exports of compiled rules over every shard of one snapshot."""

    def count(self, rule: Rule, use_cache: bool = True) -> int:
        """Exact number of users matching ``rule`` (sum over shards); ``use_cache``: each
        shard reuses the sub-expression results it keeps (``Snapshot.results``)."""
        ...

    def overlap(self, rules: Sequence[Rule], use_cache: bool = True) -> list[list[int]]:
        """The N x N intersection matrix of ``rules`` (sum of the shards' matrices)."""
        ...

    def export(self, rule: Rule, chunk_size: int = EXPORT_CHUNK) -> Iterator[pa.Array]:
        """The matching user ids, shard after shard, in chunks of at most ``chunk_size``."""
        ...

    def close(self) -> None:
        """Release what the fan-out holds (actors, handles)."""
        ...


class ShardWork:
    """What one shard computes; the Ray actor wraps exactly these calls."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._last: tuple[Rule, AbstractBitMap] | None = None

    def _memo(self, use_cache: bool) -> Memo | None:
        """The shard's own sub-expression results (one cache per shard snapshot, so a shard
        answers from what it kept, in this process or in its Ray actor)."""
        return self.snapshot.results if use_cache else None

    def count(self, rule: Rule, use_cache: bool = True) -> int:
        """Users of this shard matching ``rule``."""
        return count_rule(rule, self.snapshot.index, self._memo(use_cache))

    def overlap(self, rules: Sequence[Rule], use_cache: bool = True) -> list[list[int]]:
        """This shard's intersection matrix (diagonal: each rule's size)."""
        return overlap_counts(rules, self.snapshot.index, self._memo(use_cache))

    def _bitmap(self, rule: Rule) -> AbstractBitMap:
        if self._last is None or self._last[0] != rule:
            self._last = (rule, evaluate(rule, self.snapshot.index))
        return self._last[1]

    def export_count(self, rule: Rule) -> int:
        """Users this shard would export (evaluates and keeps the bitmap for the chunks)."""
        return len(self._bitmap(rule))

    def export_chunk(self, rule: Rule, start: int, size: int) -> pa.Array:
        """User ids ``start .. start+size`` (in ordinal order) of this shard's matches."""
        bm = self._bitmap(rule)
        ordinals = np.frombuffer(bm.to_array(), dtype=np.uint32)[start : start + size]
        return self.snapshot.user_ids(ordinals)


class LocalFanout:
    """Every shard answered in this process, one after the other."""

    def __init__(self, snapshot: ShardSet) -> None:
        self.snapshot = snapshot

    def _work(self) -> list[ShardWork]:
        return [ShardWork(s) for s in self.snapshot.shards]

    def count(self, rule: Rule, use_cache: bool = True) -> int:
        """Sum of the shards' counts."""
        return sum(w.count(rule, use_cache) for w in self._work())

    def overlap(self, rules: Sequence[Rule], use_cache: bool = True) -> list[list[int]]:
        """Element-wise sum of the shards' matrices."""
        return add_matrices([w.overlap(rules, use_cache) for w in self._work()], len(rules))

    def export(self, rule: Rule, chunk_size: int = EXPORT_CHUNK) -> Iterator[pa.Array]:
        """Each shard's matching ids in turn, chunked."""
        for work in self._work():
            n = work.export_count(rule)
            for start in range(0, n, chunk_size):
                yield work.export_chunk(rule, start, chunk_size)

    def close(self) -> None:
        """Nothing to release: the shards are memory-mapped files."""


def add_matrices(matrices: Sequence[Sequence[Sequence[int]]], n: int) -> list[list[int]]:
    """Element-wise sum of ``n`` x ``n`` matrices."""
    out = [[0] * n for _ in range(n)]
    for m in matrices:
        for i in range(n):
            row, src = out[i], m[i]
            for j in range(n):
                row[j] += int(src[j])
    return out
