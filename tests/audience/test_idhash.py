"""The vectorized id hash equals the scalar one for every string (lookups depend on it)."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from adtarget.audience.idhash import hash_id, hash_ids


@settings(max_examples=150, deadline=None)
@given(ids=st.lists(st.text(max_size=40), max_size=30), skip=st.integers(0, 3))
def test_vector_equals_scalar(ids: list[str], skip: int) -> None:
    arr = pa.array(["pad"] * skip + ids, pa.large_string()).slice(skip)
    assert [int(h) for h in hash_ids(arr)] == [hash_id(s) for s in ids]


def test_distinct_ids_hash_apart() -> None:
    ids = [f"user-{i}" for i in range(5000)] + ["", "a", "a\x00", "ab" * 20]
    assert len({hash_id(s) for s in ids}) == len(ids)
