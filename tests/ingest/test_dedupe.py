"""Duplicate ids across batches: exact, first occurrence wins, collisions never reject."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from adtarget.ingest import dedupe
from adtarget.ingest.dedupe import SeenIds


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.text(alphabet="abc", min_size=0, max_size=3), max_size=15), max_size=6))
def test_matches_a_python_set(batches: list[list[str]]) -> None:
    seen_ids = SeenIds()
    reference: set[str] = set()
    for batch in batches:
        got = seen_ids.offer(pa.array(batch, pa.string())).tolist()
        want = []
        for v in batch:
            want.append(v in reference)
            reference.add(v)
        assert got == want


def test_hash_collisions_are_not_duplicates(monkeypatch: object) -> None:
    # every id hashes to the same value: all are candidates, none may be rejected wrongly
    def same_hash(arr: pa.Array) -> np.ndarray:
        return np.full(len(arr), 42, dtype=np.uint64)

    import pytest

    mp = pytest.MonkeyPatch()
    mp.setattr(dedupe, "hash_ids", same_hash)
    try:
        s = SeenIds()
        assert s.offer(pa.array(["a", "b", "a"])).tolist() == [False, False, True]
        assert s.offer(pa.array(["c", "b"])).tolist() == [False, True]
    finally:
        mp.undo()
