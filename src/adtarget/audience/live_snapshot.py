"""The live audience of one snapshot: its memory-mapped base read through the delta.

Why its own module: the sharded live audience (``audience.sharded_live``) is made of these, one
per shard, and the follower (``audience.live``) hands out both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from adtarget.audience.delta import Delta, DeltaView
from adtarget.audience.delta_index import DeltaIndex
from adtarget.audience.results import ResultCache
from adtarget.audience.snapshot import Snapshot
from adtarget.rules.ast import SEGMENTS_FIELD


class LiveSnapshot(Snapshot):
    """A ``Snapshot`` whose index, users and features include the delta (same interface).

    Shares every memory-mapped array with its base (the attributes are copied, not the data);
    the bitmaps are the frozen ``view`` (one consistent state per handle), per-user features
    read the delta's current state (a decision sees an update at once).
    """

    def __init__(  # noqa: D107
        self, base: Snapshot, delta: Delta, view: DeltaView, results: ResultCache | None = None
    ) -> None:
        self.__dict__.update(base.__dict__)
        self.base = base
        self.delta = delta
        self.view = view
        self.updates_seq = view.seq
        self.index = DeltaIndex(base.index, view, delta.rules)  # type: ignore[assignment]
        # sub-expression results of this view only (the base's cache holds base answers); the
        # follower hands every handle of one view the same cache, and a new view a new one
        self._results = results if results is not None else ResultCache()
        self.num_ordinals = delta.n0 + len(delta.new_list)
        self.__dict__.pop("num_users", None)  # a property here: counted only when asked

    @property
    def num_users(self) -> int:  # type: ignore[override]
        """Live users: the base's, less deleted, plus created (counted on first use)."""
        return len(self.index.universe())

    def __repr__(self) -> str:
        return f"LiveSnapshot({self.version!r}, seq={self.updates_seq})"

    def ordinal_of(self, user_id: str) -> int | None:
        """The live user's ordinal (base or created by an update), else ``None``."""
        return self.delta.ordinal_of(user_id)

    def is_alive(self, ordinal: int) -> bool:
        """Whether the ordinal is a current user."""
        return ordinal in self.index.universe()

    def user_id_of(self, ordinal: int) -> str:
        """The user id at an ordinal."""
        if ordinal >= self.delta.n0:
            return self.delta.new_list[ordinal - self.delta.n0]
        return self.base.user_id_of(ordinal)

    def features(self, ordinal: int) -> dict[str, Any]:
        """Current features (base overlaid by updates)."""
        got = self.delta.features(ordinal)
        return got if got is not None else {SEGMENTS_FIELD: frozenset()}

    def features_of(self, user_id: str) -> dict[str, Any] | None:
        """Current features by user id, or ``None`` for an unknown or deleted user."""
        ordinal = self.delta.ordinal_of(user_id)
        return None if ordinal is None else self.delta.features(ordinal)

    def features_many(self, user_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """``features_of`` of each user (the delta's batch read: the base's columns for users
        no update touched)."""
        return self.delta.features_many(user_ids)

    def ids_array(self) -> pa.LargeStringArray:
        """All user ids by ordinal, base ids then users created by updates."""
        base_ids = self.base.ids_array()
        extra = self.delta.new_list[: self.num_ordinals - self.delta.n0]
        if not extra:
            return base_ids
        return pa.concat_arrays([base_ids, pa.array(extra, pa.large_string())])

    def user_ids(self, ordinals: npt.NDArray[np.uint32]) -> pa.Array:
        """User ids for many ordinals (export)."""
        if not len(ordinals) or int(ordinals.max()) < self.delta.n0:
            return self.base.user_ids(ordinals)
        return self.ids_array().take(pa.array(ordinals, type=pa.uint32()))

    def segment_info(self) -> dict[str, dict[str, Any]]:
        """Per segment: kind, rule and current size (users deleted since the base left out)."""
        info = self.base.segment_info()
        for name, meta in info.items():
            meta["size"] = len(self.index.segment(name))
        return info
