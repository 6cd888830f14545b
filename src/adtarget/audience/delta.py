"""Real-time profile updates as small delta bitmaps over an immutable base snapshot.

Why deltas and not a new snapshot per update: a snapshot version is immutable and rewriting one
costs seconds at 10M users, while an update touches one user. So each (dimension, value) gets a
small "added" bitmap of the users whose *current* value it is, and each dimension a "touched"
bitmap of users whose base value no longer counts; a lookup is ``(base - touched) | added``.
That is exact for every evaluator path, because the overlay sits at the ``BitmapIndex`` level.

Concurrency: ``Delta`` is the mutable working state, changed only under its owner's lock (see
``audience.live``). Readers get a ``DeltaView``: frozen copies of the bitmaps as of one applied
sequence number, so one query sees one consistent state while updates keep arriving. Freezing
copies only the keys changed since the last view.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyroaring import AbstractBitMap, BitMap, FrozenBitMap

from adtarget.audience.snapshot import Snapshot
from adtarget.rules.ast import SEGMENTS_FIELD, Rule
from adtarget.rules.eval_bitmap import evaluate
from adtarget.rules.parse import parse

EMPTY = FrozenBitMap()
EMPTY_SET: frozenset[Any] = frozenset()
Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class UserState:
    """One touched user: alive or deleted, whether base features are void, the overrides.

    ``over`` maps a dimension to its current value, ``None`` meaning "missing now"; when
    ``fresh`` (a new user, or one deleted and created again) dimensions not in ``over`` are
    missing too, else they keep the base snapshot's value.
    """

    alive: bool
    fresh: bool
    over: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Update:
    """One accepted update as the log replays it (values already validated)."""

    seq: int
    user_id: str
    set: Mapping[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    delete: bool = False


def value_kind(value: Any) -> str:
    """The dimension type a validated value belongs to (values are self-describing)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, frozenset | list | tuple | set):
        return "set"
    return "category"


@dataclass(frozen=True)
class DeltaView:
    """Frozen delta bitmaps as of ``seq`` (what one query reads)."""

    seq: int
    void: FrozenBitMap
    dead: FrozenBitMap
    born: FrozenBitMap
    touched: Mapping[str, FrozenBitMap]
    added: Mapping[str, Mapping[Any, FrozenBitMap]]
    present: Mapping[str, FrozenBitMap]
    numbers: Mapping[str, tuple[list[float], list[FrozenBitMap]]]
    kinds: Mapping[str, str]
    empty: bool
    memo: dict[Any, AbstractBitMap] = field(default_factory=dict, compare=False)
    """Derived bitmaps of this view (universe, masks), shared by every reader of it."""


class Delta:
    """The mutable delta of one base snapshot: apply updates in sequence order, then ``view()``.

    Args:
        base: the snapshot the deltas apply to.
        seq: the last log sequence number already folded into ``base``.
    """

    def __init__(self, base: Snapshot, seq: int) -> None:
        self.base = base
        self.base_seq = seq
        self.seq = seq
        self.applied = 0
        self.n0 = base.num_ordinals
        self.new_ids: dict[str, int] = {}
        self.new_list: list[str] = []
        self.users: dict[int, UserState] = {}
        self.kinds: dict[str, str] = {n: s.type for n, s in base.registry.items()}
        self._void = BitMap()
        self._dead = BitMap()
        self._born = BitMap()
        self._touched: dict[str, BitMap] = {}
        self._added: dict[str, dict[Any, BitMap]] = {}
        self._present: dict[str, BitMap] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._view: DeltaView | None = None
        self.rules: dict[str, Rule] = _rule_segments(base)

    # -- lookups ------------------------------------------------------------------------

    def ordinal_of(self, user_id: str) -> int | None:
        """The live ordinal of a user id (base or new), ``None`` when unknown or deleted."""
        ordinal = self.new_ids.get(user_id)
        if ordinal is None:
            ordinal = self.base.ordinal_of(user_id)
            if ordinal is None:
                return None
        state = self.users.get(ordinal)
        if state is not None and not state.alive:
            return None
        return ordinal

    def features_of(self, user_id: str) -> dict[str, Any] | None:
        """A user's current features by id, ``None`` when unknown or deleted."""
        ordinal = self.ordinal_of(user_id)
        return None if ordinal is None else self.features(ordinal)

    def _any_ordinal(self, user_id: str, create: bool) -> int | None:
        ordinal = self.new_ids.get(user_id)
        if ordinal is None:
            resolved = self._resolved
            ordinal = (
                resolved.get(user_id) if resolved is not None else self.base.ordinal_of(user_id)
            )
        if ordinal is None and create:
            ordinal = self.n0 + len(self.new_list)
            self.new_ids[user_id] = ordinal
            self.new_list.append(user_id)
        return ordinal

    _resolved: dict[str, int] | None = None
    """Base ordinals of the ids of the batch being applied (looked up together)."""

    def features(self, ordinal: int) -> dict[str, Any] | None:
        """A user's current features (base overlaid), ``None`` when not alive."""
        state = self.users.get(ordinal)
        if state is None:
            if ordinal >= self.n0 or not self.base.is_alive(ordinal):
                return None
            return self.base.features(ordinal)
        if not state.alive:
            return None
        if state.fresh:  # created by updates: no list segments (they name uploaded users)
            out: dict[str, Any] = {SEGMENTS_FIELD: frozenset()}
        else:
            out = self.base.features(ordinal)
        for dim, value in state.over.items():
            if value is None:
                out.pop(dim, None)
            else:
                out[dim] = value
        return out

    # -- applying -----------------------------------------------------------------------

    def apply(self, updates: Iterable[Update]) -> None:
        """Apply updates in order (each one's ``seq`` must be past ``self.seq``)."""
        todo = [up for up in updates if up.seq > self.seq]  # else applied (replay overlap)
        if not todo:
            return
        new_ids = self.new_ids
        lookup = list({up.user_id for up in todo if up.user_id not in new_ids})
        self._resolved = self.base.ordinals_of(lookup) if len(lookup) > 8 else None
        try:
            for up in todo:
                if up.seq <= self.seq:
                    continue
                self._apply_one(up)
                self.seq = up.seq
                self.applied += 1
        finally:
            self._resolved = None
            self._view = None

    def _apply_one(self, up: Update) -> None:
        ordinal = self._any_ordinal(up.user_id, create=not up.delete)
        if ordinal is None:
            return  # deleting a user nobody knows: nothing to do
        state = self.users.get(ordinal)
        if state is None:
            is_base = ordinal < self.n0 and self.base.is_alive(ordinal)
            state = UserState(alive=is_base, fresh=not is_base, over={})
        if up.delete:
            self._retract(ordinal, state.over)
            self.users[ordinal] = UserState(alive=False, fresh=True, over={})
            self._void.add(ordinal)
            self._born.discard(ordinal)
            if ordinal < self.n0:
                self._dead.add(ordinal)
            self._dirty.add(("*", ""))
            return
        over = dict(state.over)
        if not state.alive:  # deleted, now created again: starts empty
            self._retract(ordinal, over)
            over = {}
            state = UserState(alive=True, fresh=True, over={})
        changes: dict[str, Any] = dict.fromkeys(up.unset)
        for dim, value in up.set.items():
            changes[dim] = None if value is None or value == EMPTY_SET else value
        touched, dirty = self._touched, self._dirty
        for dim, value in changes.items():
            old = over.get(dim)
            if old is not None:
                self._retract_one(ordinal, dim, old)
            over[dim] = value
            bm = touched.get(dim)
            if bm is None:
                bm = touched[dim] = BitMap()
            bm.add(ordinal)
            dirty.add(("t", dim))
            if value is not None:
                self._add(ordinal, dim, value)
        self.users[ordinal] = UserState(alive=True, fresh=state.fresh, over=over)
        if state.fresh:
            self._void.add(ordinal)
            self._born.add(ordinal)
            self._dead.discard(ordinal)
            self._dirty.add(("*", ""))

    def _add(self, ordinal: int, dim: str, value: Any) -> None:
        # no ``setdefault(k, BitMap())``: building a throwaway BitMap per call was most of
        # the cost of applying an update (profiled)
        if dim not in self.kinds:
            self.kinds[dim] = value_kind(value)
        values = self._added.get(dim)
        if values is None:
            values = self._added[dim] = {}
        for v in value if isinstance(value, frozenset) else (value,):
            bm = values.get(v)
            if bm is None:
                bm = values[v] = BitMap()
            bm.add(ordinal)
        present = self._present.get(dim)
        if present is None:
            present = self._present[dim] = BitMap()
        present.add(ordinal)
        self._dirty.add(("v", dim))

    def _retract(self, ordinal: int, over: Mapping[str, Any]) -> None:
        for dim, value in over.items():
            if value is not None:
                self._retract_one(ordinal, dim, value)

    def _retract_one(self, ordinal: int, dim: str, value: Any) -> None:
        values = self._added.get(dim)
        if values is not None:
            for v in value if isinstance(value, frozenset) else (value,):
                bm = values.get(v)
                if bm is not None:
                    bm.discard(ordinal)
        present = self._present.get(dim)
        if present is not None:
            present.discard(ordinal)
        self._dirty.add(("v", dim))

    # -- reading ------------------------------------------------------------------------

    def view(self) -> DeltaView:
        """Frozen bitmaps as of now; reuses the unchanged parts of the previous view."""
        if self._view is not None:
            return self._view
        old = self._last
        touched = dict(old.touched) if old else {}
        added = dict(old.added) if old else {}
        present = dict(old.present) if old else {}
        numbers = dict(old.numbers) if old else {}
        void, dead, born = (old.void, old.dead, old.born) if old else (EMPTY, EMPTY, EMPTY)
        for kind, dim in self._dirty:
            if kind == "*":
                void, dead, born = (
                    FrozenBitMap(self._void),
                    FrozenBitMap(self._dead),
                    FrozenBitMap(self._born),
                )
            elif kind == "t":
                touched[dim] = FrozenBitMap(self._touched[dim])
            else:
                values = self._added.get(dim, {})
                present[dim] = FrozenBitMap(self._present.get(dim, BitMap()))
                if self.kinds.get(dim) == "number":
                    keys = sorted(v for v, bm in values.items() if bm)
                    numbers[dim] = (keys, [FrozenBitMap(values[k]) for k in keys])
                else:
                    added[dim] = {v: FrozenBitMap(bm) for v, bm in values.items() if bm}
        self._dirty.clear()
        self._view = self._last = DeltaView(
            seq=self.seq,
            void=void,
            dead=dead,
            born=born,
            touched=touched,
            added=added,
            present=present,
            numbers=numbers,
            kinds=dict(self.kinds),
            empty=not self.users,
        )
        return self._view

    _last: DeltaView | None = None


def _rule_segments(base: Snapshot) -> dict[str, Rule]:

    out: dict[str, Rule] = {}
    for name, meta in base.manifest.get("segments", {}).items():
        if meta.get("kind") == "rule" and meta.get("rule"):
            try:
                out[name] = parse(meta["rule"])
            except Exception:  # noqa: BLE001 - a stored rule that no longer parses stays stored
                continue
    return out


class DeltaIndex:
    """``BitmapIndex`` of base + frozen deltas: ``(base - void - touched[dim]) | added``."""

    def __init__(self, base: Any, view: DeltaView, rules: Mapping[str, Rule] | None = None) -> None:
        self._base = base
        self._view = view
        self._rules = rules or {}
        self._memo = view.memo

    def _mask(self, dim: str) -> AbstractBitMap:
        mask = self._memo.get(dim)
        if mask is None:
            touched = self._view.touched.get(dim)
            mask = self._view.void if touched is None else self._view.void | touched
            self._memo[dim] = mask
        return mask

    def _patch(self, base_bm: AbstractBitMap, dim: str, added: AbstractBitMap) -> AbstractBitMap:
        if self._view.empty:
            return base_bm
        mask = self._mask(dim)
        out = base_bm - mask if mask else base_bm
        return out | added if added else out

    def universe(self) -> AbstractBitMap:
        """Every live user: base users not deleted, plus users created by updates."""
        got = self._memo.get(None)
        if got is None:
            v = self._view
            base = self._base.universe()
            got = self._memo[None] = base if v.empty else (base - v.dead) | v.born
        return got

    def _is_number(self, dim: str) -> bool:
        return self._view.kinds.get(dim) == "number"

    def equals(self, dim: str, value: Any) -> AbstractBitMap:
        """Users whose category/bool value equals ``value`` (numbers go through ``range``)."""
        if self._is_number(dim):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return EMPTY
            return self.range(dim, value, value, True, True)
        if self._view.kinds.get(dim) == "set":
            return self.contains(dim, value)
        added = self._view.added.get(dim, {}).get(value, EMPTY)
        return self._patch(self._base.equals(dim, value), dim, added)

    def present(self, dim: str) -> AbstractBitMap:
        """Users with a value for ``dim``."""
        added = self._view.present.get(dim, EMPTY)
        return self._patch(self._base.present(dim), dim, added)

    def contains(self, dim: str, value: Any) -> AbstractBitMap:
        """Users whose set holds ``value``."""
        added = self._view.added.get(dim, {}).get(value, EMPTY)
        return self._patch(self._base.contains(dim, value), dim, added)

    def range(
        self,
        dim: str,
        low: float | None,
        high: float | None,
        low_inclusive: bool = True,
        high_inclusive: bool = True,
    ) -> AbstractBitMap:
        """Users whose number lies between the bounds (``None`` = unbounded)."""
        base_bm = self._base.range(dim, low, high, low_inclusive, high_inclusive)
        keys, bms = self._view.numbers.get(dim, ([], []))
        lo = 0 if low is None else (bisect_left if low_inclusive else bisect_right)(keys, low)
        hi = (
            len(keys)
            if high is None
            else (bisect_right if high_inclusive else bisect_left)(keys, high)
        )
        added: AbstractBitMap = EMPTY
        if hi > lo:
            added = bms[lo] if hi - lo == 1 else BitMap.union(*bms[lo:hi])
        return self._patch(base_bm, dim, added)

    def segment(self, name: str) -> AbstractBitMap:
        """List segment members less users deleted or re-created since the base; a rule
        segment is evaluated over the live bitmaps (its stored copy predates the updates)."""
        rule = self._rules.get(name)
        if rule is not None and not self._view.empty:
            return evaluate(rule, self)
        bm: AbstractBitMap = self._base.segment(name)
        return bm - self._view.void if self._view.void else bm
