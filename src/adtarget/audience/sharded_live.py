"""Real-time profile updates over a sharded snapshot: one delta per shard, routed by user id.

Why per shard: a user lives in exactly one shard (``sharding.shard_of``), and every shard is an
ordinary ``Snapshot`` with its own ordinals, so the single-snapshot delta (``audience.delta``)
applies to a shard unchanged. ``ShardedDelta`` only routes each update to its user's shard; the
log's sequence numbers stay global, so one number says how far the whole version is applied
and replay after a switch works as for one snapshot. ``LiveShardedSnapshot`` is the sharded
snapshot whose shards are the live ones, so the fan-out sums live counts and exports live ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from adtarget.audience.delta import Delta, DeltaView, Update, UserState
from adtarget.audience.fanout import LocalFanout
from adtarget.audience.live_snapshot import LiveSnapshot
from adtarget.audience.results import ResultCache
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.sharding import shard_of, shards_of

if TYPE_CHECKING:
    from adtarget.audience.fanout import Fanout
    from adtarget.audience.snapshot import Snapshot

VECTOR_ROUTING = 64
"""From this many updates on, shards are computed for the batch at once (Arrow + NumPy)."""


def route(user_ids: Sequence[str], n: int) -> list[int]:
    """The shard of each user id among ``n`` (the stable hash every sharded build uses)."""
    if len(user_ids) >= VECTOR_ROUTING:
        return [int(k) for k in shards_of(pa.array(user_ids, pa.large_string()), n)]
    return [shard_of(u, n) for u in user_ids]


def group_by_shard(updates: Sequence[Update], n: int) -> list[list[Update]]:
    """``updates`` split by their user's shard among ``n``, each group in sequence order."""
    groups: list[list[Update]] = [[] for _ in range(n)]
    for up, k in zip(updates, route([up.user_id for up in updates], n), strict=True):
        groups[k].append(up)
    return groups


@dataclass(frozen=True)
class ShardedView:
    """Every shard's frozen delta as of one global sequence number."""

    seq: int
    views: tuple[DeltaView, ...]


class ShardedDelta:
    """The deltas of one sharded version: ``parts[k]`` is shard ``k``'s ``Delta``.

    Args:
        base: the sharded snapshot the deltas apply to.
        seq: the last log sequence number already folded into ``base``.
    """

    def __init__(self, base: ShardedSnapshot, seq: int) -> None:
        self.base = base
        self.base_seq = seq
        self.seq = seq
        self.applied = 0
        self.n = base.num_shards
        self.parts = [Delta(base.shard(k), seq) for k in range(self.n)]
        self._view: ShardedView | None = None

    def route(self, user_ids: Sequence[str]) -> list[int]:
        """The shard of each user id (the stable hash every sharded build uses)."""
        return route(user_ids, self.n)

    def apply(self, updates: Iterable[Update]) -> None:
        """Apply updates in order, each in its user's shard."""
        todo = [up for up in updates if up.seq > self.seq]
        if not todo:
            return
        groups = group_by_shard(todo, self.n)
        for k, group in enumerate(groups):
            if group:
                self.parts[k].apply(group)
        self.seq = todo[-1].seq
        self.applied += len(todo)
        self._view = None

    def view(self) -> ShardedView:
        """Every shard's frozen view; the same object until an update is applied."""
        if self._view is None or self._view.seq != self.seq:
            self._view = ShardedView(self.seq, tuple(p.view() for p in self.parts))
        return self._view

    @property
    def users(self) -> dict[tuple[int, int], UserState]:
        """Touched users of every shard, keyed ``(shard, ordinal)``."""
        return {(k, o): s for k, p in enumerate(self.parts) for o, s in p.users.items()}

    def features_of(self, user_id: str) -> dict[str, Any] | None:
        """A user's current features (base overlaid), ``None`` when unknown or deleted."""
        return self.parts[shard_of(user_id, self.n)].features_of(user_id)


class LiveShardedSnapshot(ShardedSnapshot):
    """A ``ShardedSnapshot`` whose shards are live (base shard + its delta); same interface.

    The fan-out runs over the live shards in this process (see ``fanout`` for the Ray backend).
    """

    def __init__(  # noqa: D107
        self,
        base: ShardedSnapshot,
        delta: ShardedDelta,
        view: ShardedView,
        caches: Sequence[ResultCache],
    ) -> None:
        self.__dict__.update(base.__dict__)
        self.base = base
        self.delta = delta
        self.view = view
        self.updates_seq = view.seq
        self._caches = list(caches)
        self._shards = [None] * base.num_shards
        self._fanout = None
        self.num_ordinals = sum(p.n0 + len(p.new_list) for p in delta.parts[: base.num_shards])
        self.__dict__.pop("num_users", None)

    @property
    def num_users(self) -> int:  # type: ignore[override]
        """Live users over every shard (counted on first use)."""
        return sum(s.num_users for s in self.shards)

    def __repr__(self) -> str:
        n, seq = self.num_shards, self.updates_seq
        return f"LiveShardedSnapshot({self.version!r}, shards={n}, seq={seq})"

    def shard(self, k: int) -> Snapshot:
        """Shard ``k`` with its delta applied."""
        snap = self._shards[k]
        if snap is None:
            snap = LiveSnapshot(
                self.base.shard(k), self.delta.parts[k], self.view.views[k], self._caches[k]
            )
            self._shards[k] = snap
        return snap

    @property
    def fanout(self) -> Fanout:
        """In process over the live shards, unless the base has its own fan-out: Ray shard
        hosts that follow the update log themselves answer as of at least this view's
        sequence number (``RayFanout.at_seq``), so a size never leaves out an update this
        process accepted; a fan-out that does not follow the log answers only while no
        update is pending."""
        if self._fanout is None and self._fanout_factory is not None:
            base = self.base.fanout
            at_seq = getattr(base, "at_seq", None)
            following = at_seq(self.updates_seq) if at_seq is not None else None
            if following is not None:
                self._fanout = following
            elif not any(p.users for p in self.delta.parts):
                return base
        if self._fanout is None:
            self._fanout = LocalFanout(self)
        return self._fanout


class ShardResults:
    """One ``ResultCache`` per shard view: a shard no update touched keeps its answers."""

    def __init__(self) -> None:
        self._kept: list[tuple[DeltaView, ResultCache]] = []

    def for_view(self, view: ShardedView) -> list[ResultCache]:
        """The caches of this view's shards (new ones for shards whose view changed)."""
        kept = self._kept
        if len(kept) != len(view.views):
            kept = self._kept = [(v, ResultCache()) for v in view.views]
        for k, v in enumerate(view.views):
            if kept[k][0] is not v:
                kept[k] = (v, ResultCache())
        return [c for _, c in kept]


__all__ = [
    "LiveShardedSnapshot",
    "ShardResults",
    "ShardedDelta",
    "ShardedView",
    "group_by_shard",
    "route",
]
