"""A decision index patched in place: a full ``LineItemIndex`` plus the line items changed since.

Why an overlay and not edits inside the base index: the base numbers line items by rank and
packs them into dense int bitsets memoised per value, so inserting one line item would shift
every position and invalidate every memo (a rebuild by another name). Instead a patch masks the
changed line items' positions out of the base (one bit each) and keeps their current versions in
a small ``LineItemIndex`` of their own (the *delta*), rebuilt from the changed items only. A
request ORs nothing extra when the delta is empty, and merges the delta's few matches into the
base's rank order otherwise. Each patch builds a new ``PatchedIndex`` that shares the base and
is published by one reference swap (``IndexHolder``), so a request never sees half a change.
The delta grows with the number of distinct line items changed; past a bound the holder
rebuilds (and checks that the rebuild agrees with the patched index).

The engine reads this exactly like a ``LineItemIndex``: ``match`` gives positions in rank order,
``items`` / ``facts`` / ``rule_dims`` are indexed by position (base positions first, delta
positions after them), ``explain_parts``, ``not_live``, ``live_positions``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from adtarget.decision.bits import Matches, positions_list
from adtarget.decision.explain import Part
from adtarget.decision.index import CompiledRule, Facts, LineItemIndex, compile_item_rule, facts_of
from adtarget.decision.loader import LoadedCatalog, NotLive
from adtarget.decision.models import LiveLineItem
from adtarget.rules.ast import Rule


class MergedMatches(Matches):
    """Base matches (an int bitset of base positions) merged with a few delta positions, in
    rank order: what ``PatchedIndex.match`` returns when the delta matched something."""

    __slots__ = ("_delta", "_items")

    def __init__(self, bits: int, delta: list[int], items: Sequence[LiveLineItem]) -> None:
        super().__init__(bits)
        self._delta = delta  # positions (>= base size), already in rank order
        self._items = items

    def __iter__(self) -> Iterator[int]:
        items = self._items
        pending = iter(self._delta)
        nxt = next(pending, None)
        key = items[nxt].rank_key() if nxt is not None else None
        for pos in Matches.__iter__(self):
            while key is not None and nxt is not None and key < items[pos].rank_key():
                yield nxt
                nxt = next(pending, None)
                key = items[nxt].rank_key() if nxt is not None else None
            yield pos
        if nxt is not None:
            yield nxt
            yield from pending

    def __len__(self) -> int:
        return self.bits.bit_count() + len(self._delta)

    def __bool__(self) -> bool:
        return bool(self.bits) or bool(self._delta)

    def __contains__(self, pos: object) -> bool:
        return Matches.__contains__(self, pos) or pos in self._delta

    def tolist(self) -> list[int]:
        """All positions in rank order."""
        return list(self)


def _mask(base: LineItemIndex, ids: frozenset[int]) -> int:
    """The base positions of ``ids`` as one int bitset (ids the base does not hold: none)."""
    positions = [p for li_id in ids if (p := base.position_of.get(li_id)) is not None]
    if not positions:
        return 0
    bits = bytearray((max(positions) >> 3) + 1)  # one allocation, not one big int per id
    for p in positions:
        bits[p >> 3] |= 1 << (p & 7)
    return int.from_bytes(bits, "little")


class PatchedIndex:
    """A base ``LineItemIndex`` with some of its line items replaced (see module docstring).

    Args:
        base: the index of the last full rebuild.
        changed: current live versions of the line items changed since (by id).
        gone: ids of line items changed since, live or not (masked out of the base).
        not_live: the catalog line items outside the live set, as of the last patch.
        compiler / facts: memos for the delta's rules and facts (a ``RebuildCache``).
        removed: the base positions of ``gone`` as an int bitset, when the caller has it (a
            patch extends its parent's instead of re-deriving it from every id).
    """

    def __init__(
        self,
        base: LineItemIndex,
        *,
        changed: Mapping[int, LiveLineItem] | None = None,
        gone: frozenset[int] = frozenset(),
        not_live: Sequence[NotLive] | None = None,
        version: str | None = None,
        compiler: Callable[[Rule | None], CompiledRule] = compile_item_rule,
        facts: Callable[[LiveLineItem], Facts] = facts_of,
        removed: int | None = None,
    ) -> None:
        self.base = base
        self.version = version if version is not None else base.version
        self.changed: dict[int, LiveLineItem] = dict(changed or {})
        self.gone = gone
        self.not_live: tuple[NotLive, ...] = tuple(base.not_live if not_live is None else not_live)
        self._compiler, self._facts = compiler, facts
        self._flat: LineItemIndex | None = None
        n = len(base.items)
        self._n = n
        self._removed = removed = _mask(base, gone) if removed is None else removed
        self.delta = LineItemIndex(
            list(self.changed.values()), version="delta", compiler=compiler, facts=facts
        )
        delta = self.delta
        self.items: tuple[LiveLineItem, ...] = base.items + delta.items
        self.facts: tuple[Facts, ...] = base.facts + delta.facts
        self.rule_dims: tuple[frozenset[str], ...] = base.rule_dims + delta.rule_dims
        self._live = len(base.items) - removed.bit_count() + len(delta.items)

    @classmethod
    def of(cls, base: LineItemIndex) -> PatchedIndex:
        """An unpatched view of ``base``."""
        return cls(base)

    def patched(self, ids: frozenset[int], loaded: LoadedCatalog, version: str) -> PatchedIndex:
        """A new index where line items ``ids`` are as in ``loaded`` (their fresh state: the
        live ones in ``loaded.items``, the others in ``loaded.not_live`` or deleted)."""
        changed = {k: v for k, v in self.changed.items() if k not in ids}
        changed.update((it.id, it) for it in loaded.items if it.id in ids)
        not_live = [row for row in self.not_live if row[0] not in ids]
        not_live.extend(row for row in loaded.not_live if row[0] in ids)
        not_live.sort()
        return PatchedIndex(
            self.base,
            removed=self._removed | _mask(self.base, ids - self.gone),
            changed=changed,
            gone=self.gone | ids,
            not_live=not_live,
            version=version,
            compiler=self._compiler,
            facts=self._facts,
        )

    def flat(self) -> LineItemIndex:
        """The live line items as one plain ``LineItemIndex`` (the forecast replays through
        one): the base itself when nothing is patched, else built once per patched index."""
        if not self.gone:
            return self.base
        flat = self._flat
        if flat is None:
            flat = self._flat = LineItemIndex(
                [it for _, it in self.live_positions()],
                version=self.version,
                not_live=self.not_live,
                compiler=self._compiler,
                facts=self._facts,
            )
        return flat

    @property
    def patch_size(self) -> int:
        """How many distinct line items are patched over the base (the holder's rebuild bound)."""
        return len(self.gone)

    def __len__(self) -> int:
        return self._live

    @property
    def position_of(self) -> dict[int, int]:
        """Position of each live line item by id (built on demand when patched: tools)."""
        if not self.gone:
            return self.base.position_of
        return {it.id: p for p, it in self.live_positions()}

    def live_positions(self) -> Iterator[tuple[int, LiveLineItem]]:
        """``(position, item)`` of every live line item (masked base positions skipped)."""
        removed = self._removed
        for pos, item in enumerate(self.base.items):
            if not (removed >> pos) & 1:
                yield pos, item
        n = self._n
        for pos, item in enumerate(self.delta.items):
            yield n + pos, item

    def live_items(self) -> dict[int, LiveLineItem]:
        """Every live line item by id (the agreement check compares these)."""
        return {it.id: it for _, it in self.live_positions()}

    @property
    def dimensions(self) -> frozenset[str]:
        """The dimensions any indexed rule reads."""
        return self.base.dimensions | self.delta.dimensions

    def explain_parts(self, pos: int) -> list[Part]:
        """The precompiled conjuncts of the rule at ``pos``."""
        n = self._n
        return self.base.explain_parts(pos) if pos < n else self.delta.explain_parts(pos - n)

    def match(self, features: Mapping[str, Any]) -> Matches:
        """Positions in rank order of the live line items whose rule holds for ``features``."""
        bits = self.base.match(features).bits
        removed = self._removed
        if removed:
            bits ^= bits & removed
        if not self.delta.items:
            return Matches(bits)
        hits = self.delta.match(features).bits
        if not hits:
            return Matches(bits)
        n = self._n
        return MergedMatches(bits, [n + p for p in positions_list(hits)], self.items)

    def match_ids(self, features: Mapping[str, Any]) -> set[int]:
        """Line item ids whose rule holds (for tests and benchmarks)."""
        items = self.items
        return {items[p].id for p in self.match(features)}


def differences(a: PatchedIndex, b: PatchedIndex) -> set[int]:
    """Ids of line items that ``a`` and ``b`` hold differently (live state or not-live reason).

    Two indexes over the same live items answer every request the same (the index is a pure
    function of its items), so this is the agreement check between patching and rebuilding.
    """
    left, right = a.live_items(), b.live_items()
    out = {
        li_id
        for li_id in left.keys() | right.keys()
        if (x := left.get(li_id)) is not (y := right.get(li_id)) and x != y
    }
    out.update(row[0] for row in set(a.not_live) ^ set(b.not_live))
    return out
