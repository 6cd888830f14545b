"""Which shard holds a user: the one stable function every writer and reader agrees on.

Why a hash of the user id (not an ordinal range): an upsert, a segment list or a real-time update
arrives with user ids only, and must land in exactly one shard without consulting a global id
map; a hash needs no state. The hash is ``idhash.hash_id`` (splitmix64 over the UTF-8 bytes,
the same bits on every platform and Python version), and the shard is its value modulo the shard
count, so a given id goes to the same shard forever for a given N.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from adtarget.audience.idhash import hash_id, hash_ids
from adtarget.errors import InvalidValue

MAX_SHARDS = 4096


def check_shards(n: int) -> int:
    """``n`` if it is a usable shard count (1..4096), else ``InvalidValue`` naming ``shards``."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SHARDS:
        raise InvalidValue(f"shards must be an integer from 1 to {MAX_SHARDS}", field="shards")
    return n


def shard_of(user_id: str, n: int) -> int:
    """The shard (``0..n-1``) of one user id; the scalar twin of ``shards_of``."""
    return hash_id(user_id) % n


def shards_of(user_ids: pa.Array | pa.ChunkedArray, n: int) -> npt.NDArray[np.int64]:
    """``shard_of`` of every id of a string array, vectorized (bit-identical to the scalar)."""
    if isinstance(user_ids, pa.ChunkedArray):
        user_ids = user_ids.combine_chunks()
    arr = pc.cast(user_ids, pa.large_string())
    return (hash_ids(arr) % np.uint64(n)).astype(np.int64)


def shard_name(k: int) -> str:
    """Directory name of shard ``k`` inside a sharded version: ``shard-003``."""
    return f"shard-{k:03d}"
