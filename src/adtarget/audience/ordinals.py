"""Ordinals of a build: which row lands at which ordinal, who is alive, and duplicate ids.

Why separate from the writer: ordinals are fixed before any file is written (every file is
indexed by them), and this is the only part that compares user ids across base and batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from adtarget.audience.idhash import hash_ids
from adtarget.audience.snapshot import Snapshot
from adtarget.errors import InvalidValue

U32 = np.uint32
MAX_ORDINALS = 2**32 - 1


@dataclass
class PendingSegment:
    """A list segment set during the build: ``(expires_at, unique ids)`` groups."""

    groups: list[tuple[int | None, pa.Array]]
    append: bool = False


@dataclass
class ResolvedIds:
    """Ordinals of the build: ids by ordinal, each new row's ordinal, and who is alive."""

    all_ids: pa.LargeStringArray
    row_ordinals: npt.NDArray[np.int64]
    n_base: int
    alive: npt.NDArray[np.bool_]
    hashes: npt.NDArray[np.uint64] | None = None
    """``idhash.hash_ids(all_ids)`` when the batches came with their hashes."""


def resolve_ids(
    *,
    new_ids: list[pa.Array],
    removed: list[pa.Array],
    base: Snapshot | None,
    mode: str,
    new_hashes: list[npt.NDArray[np.uint64]] | None = None,
) -> ResolvedIds:
    """Assign ordinals: upsert keeps base ordinals and appends new ids; replace starts at 0.

    ``new_hashes``: the ``hash_ids`` of each batch of ``new_ids``, when known (else None).
    """
    ids = pa.chunked_array(new_ids, pa.large_string()).combine_chunks()
    hashes = np.concatenate(new_hashes) if new_hashes else None
    if hashes is not None and len(hashes) != len(ids):
        hashes = None
    if base is not None and mode == "upsert":
        base_ids = base.ids_array()
        n_base = base.num_ordinals
        pos = pc.index_in(ids, value_set=base_ids).fill_null(-1).to_numpy(zero_copy_only=False)
        row_ordinals = pos.astype(np.int64)
        fresh = row_ordinals < 0
        row_ordinals[fresh] = n_base + np.arange(int(fresh.sum()), dtype=np.int64)
        all_ids = pa.concat_arrays([base_ids, ids.filter(pa.array(fresh))])
        if hashes is not None:
            hashes = np.concatenate([hash_ids(base_ids), hashes[fresh]])
        alive = np.zeros(len(all_ids), dtype=bool)
        alive[np.frombuffer(base.index.universe().to_array(), dtype=U32)] = True
        alive[row_ordinals] = True
    else:
        n_base = 0
        row_ordinals = np.arange(len(ids), dtype=np.int64)
        all_ids = ids
        alive = np.ones(len(ids), dtype=bool)
    if len(all_ids) > MAX_ORDINALS:
        raise InvalidValue("more than 2**32-1 users in one snapshot", field="user_id")
    if removed:
        gone = pa.chunked_array(removed, pa.large_string()).combine_chunks()
        idx = pc.index_in(gone, value_set=all_ids).drop_null().to_numpy(zero_copy_only=False)
        alive[idx.astype(np.int64)] = False
    return ResolvedIds(
        all_ids=all_ids, row_ordinals=row_ordinals, n_base=n_base, alive=alive, hashes=hashes
    )


def check_duplicates(
    keys: npt.NDArray[np.uint32],
    order: npt.NDArray[np.uint32],
    offsets: npt.NDArray[np.int64],
    data: npt.NDArray[np.uint8],
) -> None:
    """Equal hash keys are duplicates or collisions: compare the bytes within each run."""
    if len(keys) < 2:
        return
    suspects = np.flatnonzero(keys[1:] == keys[:-1])
    runs: dict[int, set[bytes]] = {}
    seen: set[int] = set()
    for i in suspects.tolist():
        for pos in (i, i + 1):
            if pos in seen:
                continue
            seen.add(pos)
            o = int(order[pos])
            raw = bytes(data[offsets[o] : offsets[o + 1]])
            group = runs.setdefault(int(keys[pos]), set())
            if raw in group:
                raise InvalidValue(
                    f"user id {raw.decode('utf-8', 'replace')!r} appears more than once",
                    field="user_id",
                )
            group.add(raw)
