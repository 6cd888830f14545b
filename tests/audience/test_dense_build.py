"""Bitmaps built from masks (``dense_build``) equal the ones Roaring builds from ordinals."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pyroaring import BitMap

from adtarget.audience import bsi, columns, dense_build
from adtarget.audience.build import SnapshotBuilder
from adtarget.audience.idhash import hash_ids
from adtarget.audience.layout import IDS_HASH, load_npy
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import SnapshotStore
from adtarget.rules.registry import DimensionSpec


def _ref(mask: np.ndarray) -> BitMap:
    return BitMap(np.flatnonzero(mask).astype(np.uint32))


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 65_536, 65_537, 200_003])
@pytest.mark.parametrize("p", [0.0, 0.001, 0.06, 0.5, 1.0])
def test_mask_bitmaps_equal_roaring(n: int, p: float) -> None:
    mask = np.random.default_rng(n).random(n) < p  # sparse, mixed and full containers
    assert dense_build.bitmap_from_mask(mask) == _ref(mask)


def test_value_set_and_cumulative_bitmaps() -> None:
    rng = np.random.default_rng(3)
    n = 150_001
    codes = rng.integers(-1, 7, n).astype(np.int8)  # -1: no value
    for v, bm in enumerate(dense_build.value_bitmaps(codes, 7)):
        assert bm == _ref(codes == v)
    cum = dense_build.cumulative_bitmaps(codes, 7)
    assert len(cum) == 6
    for r, bm in enumerate(cum):
        assert bm == _ref((codes >= 0) & (codes <= r))
    lengths = rng.integers(0, 4, n)
    owners = np.repeat(np.arange(n, dtype=np.uint32), lengths)
    flat = rng.integers(0, 5, len(owners)).astype(np.int8)
    for v, bm in enumerate(dense_build.set_value_bitmaps(owners, flat, n, 5)):
        assert bm == BitMap(np.unique(owners[flat == v]))


def test_int_ranks_match_encode_ranks() -> None:
    rng = np.random.default_rng(5)
    parts = [rng.integers(-40, 90, 1000).astype(np.int8) for _ in range(3)]
    valid = [rng.random(1000) < 0.9 for _ in range(3)]
    found = bsi.int_ranks(parts, valid)
    assert found is not None
    distinct, rank_of = found
    values = np.concatenate([p[v] for p, v in zip(parts, valid, strict=True)]).astype(np.int64)
    want_distinct, want_ranks = bsi.encode_ranks(values)
    assert distinct.tolist() == want_distinct.tolist()
    assert rank_of[values - distinct[0]].tolist() == want_ranks.tolist()
    assert bsi.int_ranks([np.array([0, 10**7])], [np.ones(2, bool)]) is None  # too wide
    assert bsi.int_ranks([np.array([5])], [np.zeros(1, bool)]) is None  # no value


def test_hashes_given_to_the_builder_are_the_ones_it_would_compute(tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = {"plan": DimensionSpec(name="plan", type="category")}
    ids = pa.array([f"u{i}" for i in range(1000)])
    batch = pa.RecordBatch.from_arrays([ids, pa.array(["a", "b"] * 500)], ["user_id", "plan"])
    sums = []
    for given in (None, hash_ids(ids.cast(pa.large_string()))):
        store = SnapshotStore(tmp_path / f"s{given is None}")
        builder = SnapshotBuilder(store=store, base=None, registry=registry)
        builder.add_batch(batch, hashes=given)
        snap = Snapshot(builder.finish())
        sums.append(load_npy(snap.path / IDS_HASH).tolist())
        assert snap.ordinal_of("u7") == 7
    assert sums[0] == sums[1]


@pytest.mark.parametrize("n", [0, 1, 5, 1_000, 100_003])
@pytest.mark.parametrize("empty", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("dtypes", [(np.int8, np.uint32), (np.int64, np.int64)])
def test_owners_equal_repeat(n: int, empty: float, dtypes: tuple[type, type]) -> None:
    """The owner of every set element, as the writer holds lengths and offsets (narrow or
    merged), equals ``np.repeat``'s, with empty rows anywhere (the first ones included)."""
    rng = np.random.default_rng(n)
    lengths = np.where(rng.random(n) < empty, 0, rng.integers(1, 5, n)).astype(dtypes[0])
    offsets = np.zeros(n + 1, dtype=dtypes[1])
    np.cumsum(lengths, dtype=offsets.dtype, out=offsets[1:])
    got = columns.owners_of(offsets, lengths)
    assert got.dtype == np.uint32
    assert np.array_equal(got, np.repeat(np.arange(n, dtype=np.uint32), lengths))
