"""File names and low-level read/write helpers of a snapshot directory.

Why a separate module: the builder writes and the snapshot reads the same files; keeping names
and encodings in one place means they cannot drift apart. Everything large is a ``.npy`` array
(memory-mapped by readers) or a blob of serialized Roaring bitmaps with an offsets array.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pyroaring import AbstractBitMap, BitMap, FrozenBitMap

from adtarget.rules.registry import DimensionSpec

FORMAT = 1
MANIFEST = "manifest.json"
IDS_OFFSETS = "ids.offsets.npy"
IDS_DATA = "ids.data.bin"
IDS_SORTED = "ids.sorted.npy"
IDS_HASH = "ids.hash.npy"
UNIVERSE = "universe.bin"
SEGMENTS = "segments.bin"


def dim_file(slot: str, part: str) -> str:
    """``d3`` + ``codes.npy`` -> ``d3.codes.npy``; slots keep odd dimension names off disk."""
    return f"{slot}.{part}"


def save_npy(path: Path, arr: npt.NDArray[Any]) -> None:
    """Write an array as ``.npy`` (readers memory-map it)."""
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)


def map_file(path: Path) -> pa.Buffer:
    """Memory-map a whole file read-only and close its descriptor at once.

    Why not ``np.load(mmap_mode="r")`` / ``np.memmap``: Python's ``mmap`` keeps a duplicate of
    the file descriptor for the life of the mapping, so a snapshot held ~4 descriptors per
    dimension and a wide upload (10,000 columns) exhausted the process's file limit: every
    later open, sizing included, failed until a restart. Arrow's memory map gives the region to
    the buffers it hands out and closes the descriptor on ``close()``; the mapping stays valid
    (and keeps an unlinked, pruned version readable) until the last buffer is released.
    """
    with pa.memory_map(str(path), "r") as mapped:
        return mapped.read_buffer()


def load_npy(path: Path) -> npt.NDArray[Any]:
    """A read-only ``.npy`` array over the file's mapping (no descriptor stays open)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        start = fh.tell()
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    flat = np.frombuffer(map_file(path), dtype=dtype, count=count, offset=start)
    return flat.reshape(shape, order="F" if fortran else "C")


def load_bytes(path: Path) -> npt.NDArray[np.uint8]:
    """A raw byte file as a read-only array over its mapping (an empty file is empty)."""
    if os.path.getsize(path) == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(map_file(path), dtype=np.uint8)


RUN_GAIN = 8


def _bytes(bm: AbstractBitMap) -> int:
    st = bm.get_statistics()
    return int(
        st["n_bytes_array_containers"]
        + st["n_bytes_run_containers"]
        + st["n_bytes_bitset_containers"]
    )


def compact_bitmap(bm: AbstractBitMap) -> BitMap:
    """The form a bitmap is stored in: run containers only where they are far smaller.

    Why not plain ``run_optimize()``: Roaring picks runs whenever they save any bytes, and a
    container of ~2,000 short runs (a near-full bitmap with random gaps, like ``present`` or a
    high cumulative of ages) is 7.6 KB against an 8 KB bitset yet makes every AND/ANDNOT with
    it ~40x slower (1.4 ms against 0.035 ms for one difference over 3M users). Runs are kept
    only when the whole bitmap shrinks ``RUN_GAIN``-fold (sorted data, full universes), where
    they are fast too.
    """
    plain = BitMap(bm, optimize=False)
    if plain.get_statistics()["n_run_containers"]:
        plain = BitMap(plain.to_array(), optimize=False)  # back to array/bitset containers
    runs = BitMap(plain, optimize=False)
    if runs.run_optimize() and _bytes(runs) * RUN_GAIN <= _bytes(plain):
        return runs
    return plain


def write_bitmaps(path: Path, bitmaps: Sequence[AbstractBitMap]) -> npt.NDArray[np.int64]:
    """Serialize bitmaps back to back into ``path``; returns the ``len+1`` offsets.

    Every bitmap goes through ``compact_bitmap`` (the one place the stored form is chosen).
    """
    offsets = np.zeros(len(bitmaps) + 1, dtype=np.int64)
    with open(path, "wb") as fh:
        for i, bm in enumerate(bitmaps):
            data = compact_bitmap(bm).serialize()
            fh.write(data)
            offsets[i + 1] = offsets[i] + len(data)
    return offsets


def read_bitmap(blob: npt.NDArray[np.uint8], start: int, end: int) -> FrozenBitMap:
    """Deserialize one bitmap out of a memory-mapped blob."""
    return FrozenBitMap.deserialize(blob[start:end].data)  # type: ignore[arg-type]


def write_json(path: Path, obj: Any) -> None:
    """Write JSON compactly (dictionaries of values can be large)."""
    path.write_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


def file_checksum(path: Path) -> str:
    """CRC-32 of a file, streamed: detects torn or corrupted files at a fraction of SHA-256's
    cost here (hundreds of MB per snapshot; zlib releases the GIL so files hash in parallel)."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return f"crc32:{crc:08x}"


def registry_to_json(registry: dict[str, DimensionSpec]) -> list[dict[str, Any]]:
    """The registry as stored in the manifest."""
    return [
        {
            "name": s.name,
            "type": s.type,
            "allowed_values": sorted(s.allowed_values) if s.allowed_values is not None else None,
            "description": s.description,
        }
        for s in registry.values()
    ]


def registry_from_json(items: list[dict[str, Any]]) -> dict[str, DimensionSpec]:
    """Inverse of ``registry_to_json``."""
    out: dict[str, DimensionSpec] = {}
    for item in items:
        allowed = item.get("allowed_values")
        out[item["name"]] = DimensionSpec(
            name=item["name"],
            type=item["type"],
            allowed_values=frozenset(allowed) if allowed is not None else None,
            description=item.get("description", ""),
        )
    return out


def int_view(array: Any) -> Any:
    """A 1-D memoryview over a contiguous numpy array (no copy; keeps the mapping alive).

    Why: per-request lookups (the decision path) index these arrays a few times per user, and
    indexing a memoryview is a C call returning a Python int, where a numpy scalar costs ~1 µs.
    """
    arr: Any = np.ascontiguousarray(array)
    view: Any = memoryview(arr).cast("B")
    return view.cast(arr.dtype.char)
