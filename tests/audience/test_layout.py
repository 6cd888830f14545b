"""The stored form of a bitmap: same members, runs only where they are far smaller.

Why it matters: a near-full bitmap with random gaps stored as thousands of short runs is a
little smaller than bitsets but makes every AND/ANDNOT with it ~40x slower; sorted data and
full universes are where runs pay.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pyroaring import BitMap, FrozenBitMap

from adtarget.audience.layout import compact_bitmap, load_bytes, read_bitmap, write_bitmaps


def _runs(bm: BitMap | FrozenBitMap) -> int:
    return int(bm.get_statistics()["n_run_containers"])


def _near_full(n: int = 1 << 20, missing: float = 0.01) -> FrozenBitMap:
    keep = np.random.default_rng(3).random(n) >= missing
    return FrozenBitMap(np.flatnonzero(keep).astype(np.uint32), optimize=True)


def test_short_runs_are_stored_as_bitsets() -> None:
    bm = _near_full()
    assert _runs(bm) > 0  # Roaring's own choice: runs, a few bytes smaller
    out = compact_bitmap(bm)
    assert out == bm
    assert _runs(out) == 0


def test_long_runs_are_kept() -> None:
    bm = BitMap(range(0, 1 << 20)) | BitMap(range(3 << 20, 5 << 20))
    out = compact_bitmap(FrozenBitMap(bm, optimize=False))
    assert out == bm
    assert _runs(out) == 48  # 16 + 32 full containers
    assert out.get_statistics()["n_bitset_containers"] == 0


def test_written_bitmaps_read_back_equal(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    bitmaps = [
        _near_full(),
        FrozenBitMap(range(100_000, 900_000)),
        FrozenBitMap(np.unique(rng.integers(0, 1 << 22, 5_000)).astype(np.uint32)),
        FrozenBitMap(),
    ]
    offsets = write_bitmaps(tmp_path / "b.bin", bitmaps)
    blob = load_bytes(tmp_path / "b.bin")
    back = [read_bitmap(blob, int(offsets[i]), int(offsets[i + 1])) for i in range(len(bitmaps))]
    assert back == bitmaps
    assert _runs(back[0]) == 0 and _runs(back[1]) > 0
