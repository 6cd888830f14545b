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

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyroaring import AbstractBitMap, BitMap, FrozenBitMap

from adtarget.audience.snapshot import Snapshot
from adtarget.rules.ast import SEGMENTS_FIELD, Rule
from adtarget.rules.parse import parse

EMPTY = FrozenBitMap()
EMPTY_SET: frozenset[Any] = frozenset()
_PRESENT = object()
_MISSING = object()
"""A dimension absent from a user's overrides (``None`` there means "unset")."""
"""Key of a dimension's present bitmap among its (dimension, value) bitmaps in a batch."""
Scalar = str | int | float | bool
HISTORY = 64
"""Views whose changed ordinals a delta remembers (``Delta.changed_between``)."""


@dataclass(slots=True)  # not frozen: its __init__ ran once per update (profiled); never mutated
class UserState:
    """One touched user: alive or deleted, whether base features are void, the overrides.

    ``over`` maps a dimension to its current value, ``None`` meaning "missing now"; when
    ``fresh`` (a new user, or one deleted and created again) dimensions not in ``over`` are
    missing too, else they keep the base snapshot's value.
    """

    alive: bool
    fresh: bool
    over: Mapping[str, Any]


@dataclass(slots=True)  # not frozen, like UserState: built once per update, never mutated
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
    number: int = 0
    """This view's place among its delta's views (``Delta.changed_between`` counts by it)."""
    owner: object = None
    """A token of the delta that made this view."""
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
        self._dirty: set[tuple[str, str, Any]] = set()
        """What changed since the last view: ``("*", "", None)`` (void/dead/born), ``("t",
        dim, None)`` (touched), ``("v", dim, value)`` (one added bitmap; ``_PRESENT`` for the
        present one), so a view re-freezes only the bitmaps that changed."""
        self._view: DeltaView | None = None
        self.rules: dict[str, Rule] = _rule_segments(base)
        self._changed = BitMap()
        """Ordinals whose state any update touched since the last view."""
        self._history: deque[tuple[int, FrozenBitMap]] = deque(maxlen=HISTORY)
        """``(view number, ordinals changed since the view before)`` of the latest views."""
        self._views = 0
        self._token = object()
        self.base_memo: dict[Any, AbstractBitMap] = {}
        """Results of the immutable base index worth keeping across views (``DeltaIndex``)."""

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

    def features_many(self, user_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """``features_of`` of each user: the users no update touched read from the base a
        column at a time (``Snapshot.features_at``), the others one by one."""
        new_ids, users = self.new_ids, self.users
        in_base = self.base.ordinals_of([u for u in user_ids if u not in new_ids])
        out: list[dict[str, Any] | None] = []
        plain: list[int] = []  # positions in out of users the base answers alone
        ordinals: list[int] = []
        for user_id in user_ids:
            ordinal = new_ids.get(user_id)
            if ordinal is None:
                ordinal = in_base.get(user_id)
            if ordinal is None:
                out.append(None)
            elif ordinal in users or ordinal >= self.n0:
                out.append(self.features_of(user_id))
            else:
                plain.append(len(out))
                ordinals.append(ordinal)
                out.append(None)
        for at, row in zip(plain, self.base.features_at(ordinals), strict=True):
            out[at] = row
        return out

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
        """Apply updates in order (each one's ``seq`` must be past ``self.seq``).

        Two passes, because per-update bitmap edits were most of the cost (profiled): first
        each update changes its user's state (plain dict work, in order), then each user's
        bitmaps go from the state before the batch to the state after it, with one bulk
        ``difference_update`` / ``update`` per (dimension, value).
        """
        todo = [up for up in updates if up.seq > self.seq]  # else applied (replay overlap)
        if not todo:
            return
        new_ids, new_list, users, kinds = self.new_ids, self.new_list, self.users, self.kinds
        lookup = list({up.user_id for up in todo if up.user_id not in new_ids})
        base = self.base
        resolved = (
            base.ordinals_of(lookup)
            if len(lookup) > 8
            else {u: o for u in lookup if (o := base.ordinal_of(u)) is not None}
        )
        universe = base.index.universe()
        n0 = self.n0
        before: dict[int, UserState] = {}
        touched_now: dict[str, list[int]] = {}
        last, done = self.seq, 0
        try:
            for up in todo:  # inlined: this loop runs once per update (profiled)
                if up.seq <= last:
                    continue
                uid = up.user_id
                ordinal = new_ids.get(uid)
                if ordinal is None:
                    ordinal = resolved.get(uid)
                    if ordinal is None:
                        if up.delete:  # deleting a user nobody knows: nothing to do
                            last, done = up.seq, done + 1
                            continue
                        ordinal = new_ids[uid] = n0 + len(new_list)
                        new_list.append(uid)
                state = users.get(ordinal)
                if state is None:
                    is_base = ordinal < n0 and ordinal in universe
                    state = before[ordinal] = UserState(is_base, not is_base, {})
                elif ordinal not in before:
                    before[ordinal] = state
                if up.delete:
                    users[ordinal] = UserState(False, True, {})
                else:
                    if state.alive:
                        over, fresh = dict(state.over), state.fresh
                    else:  # deleted, now created again: starts empty
                        over, fresh = {}, True
                    for dim in up.unset:
                        over[dim] = None
                        got = touched_now.get(dim)
                        if got is None:
                            touched_now[dim] = [ordinal]
                        else:
                            got.append(ordinal)
                    for dim, value in up.set.items():
                        if value is None or value == EMPTY_SET:
                            value = None
                        elif dim not in kinds:
                            kinds[dim] = value_kind(value)
                        over[dim] = value
                        got = touched_now.get(dim)
                        if got is None:
                            touched_now[dim] = [ordinal]
                        else:
                            got.append(ordinal)
                    users[ordinal] = UserState(True, fresh, over)
                last, done = up.seq, done + 1
        finally:
            self.seq, self.applied = last, self.applied + done
            self._view = None
            self._changed.update(before)
            for dim, ordinals in touched_now.items():
                bm = self._touched.get(dim)
                if bm is None:
                    bm = self._touched[dim] = BitMap()
                bm.update(ordinals)
                self._dirty.add(("t", dim, None))
            self._rebitmap(before)

    def _rebitmap(self, before: dict[int, UserState]) -> None:
        """Move each user's bitmap bits from its state before the batch to its state now
        (a value the batch left as it was keeps its bits)."""
        gone: dict[tuple[str, Any], list[int]] = {}
        came: dict[tuple[str, Any], list[int]] = {}
        void_add: list[int] = []
        users, n0 = self.users, self.n0
        for ordinal, old in before.items():
            new = users[ordinal]
            old_over = old.over
            new_over = new.over if new.alive else {}
            for dim, value in old_over.items():
                if value is None or new_over.get(dim, _MISSING) == value:
                    continue
                for v in value if type(value) is frozenset else (value,):
                    _push(gone, (dim, v), ordinal)
                if new_over.get(dim) is None:
                    _push(gone, (dim, _PRESENT), ordinal)
            for dim, value in new_over.items():
                if value is None:
                    continue
                was = old_over.get(dim, _MISSING)
                if was == value:
                    continue
                for v in value if type(value) is frozenset else (value,):
                    _push(came, (dim, v), ordinal)
                if was is _MISSING or was is None:
                    _push(came, (dim, _PRESENT), ordinal)
            if not new.alive:
                void_add.append(ordinal)
                self._born.discard(ordinal)
                if ordinal < n0:
                    self._dead.add(ordinal)
            elif new.fresh:
                void_add.append(ordinal)
                self._born.add(ordinal)
                self._dead.discard(ordinal)
        if void_add:
            self._void.update(void_add)
            self._dirty.add(("*", "", None))
        for (dim, v), ordinals in gone.items():
            bm = self._bitmap(dim, v, create=False)
            if bm is not None:
                bm.difference_update(BitMap(ordinals))
            self._dirty.add(("v", dim, v))
        for (dim, v), ordinals in came.items():
            bm = self._bitmap(dim, v, create=True)
            assert bm is not None
            bm.update(ordinals)
            self._dirty.add(("v", dim, v))

    def _bitmap(self, dim: str, v: Any, *, create: bool) -> BitMap | None:
        """The added bitmap of (dim, v), or the dimension's present bitmap (``_PRESENT``)."""
        if v is _PRESENT:
            bm = self._present.get(dim)
            if bm is None and create:
                bm = self._present[dim] = BitMap()
            return bm
        values = self._added.get(dim)
        if values is None:
            if not create:
                return None
            values = self._added[dim] = {}
        bm = values.get(v)
        if bm is None and create:
            bm = values[v] = BitMap()
        return bm

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
        changed: dict[str, set[Any]] = {}
        for kind, dim, v in self._dirty:
            if kind == "*":
                void, dead, born = (
                    FrozenBitMap(self._void),
                    FrozenBitMap(self._dead),
                    FrozenBitMap(self._born),
                )
            elif kind == "t":
                touched[dim] = FrozenBitMap(self._touched[dim])
            else:
                changed.setdefault(dim, set()).add(v)
        for dim, vs in changed.items():
            if _PRESENT in vs:
                present[dim] = FrozenBitMap(self._present.get(dim, BitMap()))
                vs.discard(_PRESENT)
            if not vs:
                continue
            values = self._added.get(dim, {})
            number = self.kinds.get(dim) == "number"
            if number:
                keys, bms = numbers.get(dim, ([], []))
                frozen = dict(zip(keys, bms, strict=True))
            else:
                frozen = dict(added.get(dim, {}))
            for v in vs:
                bm = values.get(v)
                if bm:
                    frozen[v] = FrozenBitMap(bm)
                else:
                    frozen.pop(v, None)
            if number:
                order = sorted(frozen)
                numbers[dim] = (order, [frozen[k] for k in order])
            else:
                added[dim] = frozen
        self._dirty.clear()
        self._views += 1
        self._history.append((self._views, FrozenBitMap(self._changed)))
        self._changed = BitMap()
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
            number=self._views,
            owner=self._token,
        )
        return self._view

    def changed_between(self, old: DeltaView, new: DeltaView) -> AbstractBitMap | None:
        """Every ordinal whose state may differ between two views of this delta (a superset),
        or ``None`` when the history no longer reaches back to ``old``."""
        if old.owner is not self._token or new.owner is not self._token:
            return None
        if new.number < old.number or not self._history:
            return None
        if new.number == old.number:
            return BitMap()
        first = self._history[0][0]
        if old.number + 1 < first:
            return None
        parts = [bm for n, bm in self._history if old.number < n <= new.number]
        return BitMap.union(*parts) if parts else BitMap()

    _last: DeltaView | None = None


def _push(into: dict[tuple[str, Any], list[int]], key: tuple[str, Any], ordinal: int) -> None:
    got = into.get(key)
    if got is None:
        into[key] = [ordinal]
    else:
        got.append(ordinal)


def _rule_segments(base: Snapshot) -> dict[str, Rule]:

    out: dict[str, Rule] = {}
    for name, meta in base.manifest.get("segments", {}).items():
        if meta.get("kind") == "rule" and meta.get("rule"):
            try:
                out[name] = parse(meta["rule"])
            except Exception:  # noqa: BLE001 - a stored rule that no longer parses stays stored
                continue
    return out
