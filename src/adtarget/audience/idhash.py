"""A 64-bit hash of user ids, computed vectorized over an Arrow string array or for one id.

Why hash instead of sorting the strings: sorting 10M Arrow strings takes seconds, sorting 10M
uint64 hashes a fraction of that; lookups then ``searchsorted`` the hashes and compare the id
bytes of the (almost always single) candidate, so collisions cost nothing in correctness.
The scalar and vector versions must agree bit for bit (a test checks it).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

U64 = np.uint64
MASK = (1 << 64) - 1
K_LEN = 0x9E3779B97F4A7C15
K_MIX1 = 0xBF58476D1CE4E5B9
K_MIX2 = 0x94D049BB133111EB
_BYTE_MASKS = np.array([(1 << (8 * r)) - 1 for r in range(8)] + [MASK], dtype=U64)


def _mix_vec(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finalizer, in place (``h`` is always a fresh temporary here)."""
    t = h >> U64(30)
    h ^= t
    h *= U64(K_MIX1)
    np.right_shift(h, U64(27), out=t)
    h ^= t
    h *= U64(K_MIX2)
    np.right_shift(h, U64(31), out=t)
    h ^= t
    return h


def _mix(h: int) -> int:
    h ^= h >> 30
    h = (h * K_MIX1) & MASK
    h ^= h >> 27
    h = (h * K_MIX2) & MASK
    return h ^ (h >> 31)


def hash_id(user_id: str) -> int:
    """The hash of one id (UTF-8 bytes, 8 at a time, little-endian, length-seeded)."""
    data = user_id.encode("utf-8")
    h = (len(data) * K_LEN) & MASK
    for j in range(0, len(data), 8):
        h = _mix(h ^ int.from_bytes(data[j : j + 8], "little"))
    return _mix(h ^ K_LEN)


def offsets_and_data(arr: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Offsets (rebased to 0) and UTF-8 bytes of a ``large_string`` array, without copies."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data_buf = arr.buffers()[2]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    if n == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    start, end = int(offsets[0]), int(offsets[-1])
    return (offsets - start if start else offsets), data[start:end]


def hash_ids(arr: pa.Array) -> npt.NDArray[np.uint64]:
    """``hash_id`` of every element of a ``large_string`` array, vectorized."""
    offsets, data = offsets_and_data(arr)
    n = len(offsets) - 1
    padded = np.zeros(len(data) + 8, dtype=np.uint8)
    padded[: len(data)] = data
    words = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    h = lengths.astype(U64) * U64(K_LEN)
    longest = int(lengths.max()) if n else 0
    shortest = int(lengths.min()) if n else 0
    j = 0
    while j + 8 <= shortest:  # every id has a full word here: no masks, no branches
        h ^= words[starts + j]
        h = _mix_vec(h)
        j += 8
    for tail in range(j, longest, 8):
        remaining = np.clip(lengths - tail, 0, 8)
        active = remaining > 0
        w = words[np.minimum(starts + tail, len(words) - 1)] & _BYTE_MASKS[remaining]
        h = np.where(active, _mix_vec(h ^ w), h)
    return _mix_vec(h ^ U64(K_LEN))
