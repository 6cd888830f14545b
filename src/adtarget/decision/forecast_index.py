"""The serving index as the replay sees it: with the proposal added, or without it.

Why not build a new ``LineItemIndex`` per forecast: the serving index already holds every live
line item, and building another (10,000 items: ~0.5 s; 100,000: seconds) would cost more than
the replay. The replay asks the serving index's ``match`` once per distinct (user, context) —
memoized, since a user's features are fixed during a forecast — and moves the answer's bits to
the replay's positions: the proposal's old self (an existing line item) taken out, the proposal
put in at its rank, matched by its rule as the reach step decided (the per-user evaluator, which
the index is property-tested to equal). The engine walks these positions with the same
``LiveLineItem``s and ``Facts`` as serving.

The replay asks ``matched(key, proposal_matches, features)`` per request and hands the answer to
``DecisionEngine.serve_matched`` (the engine's own walk); ``use`` + ``match`` is the same for a
caller that goes through ``DecisionEngine.decide`` (single-threaded: ``use`` names the request).
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from functools import partial
from itertools import chain, islice
from operator import attrgetter
from typing import TYPE_CHECKING, Any, cast

from adtarget.decision.bits import HEAD_BITS, Matches, positions_list
from adtarget.decision.forecast_cache import LiveCache
from adtarget.decision.index import Facts, LineItemIndex, compile_item_rule, facts_of
from adtarget.decision.models import LiveLineItem

if TYPE_CHECKING:
    from adtarget.decision.forecast_window import Replayed

Key = tuple[str, str]
_NOT_COPIED = object()
_HEAD_MASK = (1 << HEAD_BITS) - 1


class LiveMatches:
    """``live.match`` per (user, context) key, computed once per forecast.

    Args:
        live: the serving index.
        cache: matches kept from earlier forecasts on the same index (``forecast_cache``), used
            only where the user's profile (``profile_of``) is equal to the one they came from.
        profile_of: the user's current profile (needed with ``cache``).
        context_keys: every key a logged context carries: the index's other dimensions read
            the profile alone, so their lookups are ORed once per user, not per request
            (``LineItemIndex.lookup_some``), then only these per (user, context).
    """

    def __init__(
        self,
        live: LineItemIndex,
        cache: LiveCache | None = None,
        profile_of: Mapping[str, Mapping[str, Any] | None] | None = None,
        context_keys: AbstractSet[str] | None = None,
    ) -> None:
        self.live = live
        self.bits: dict[Key, int] = {}
        self.cache = cache
        self.profile_of = profile_of if profile_of is not None else {}
        self._by_user: dict[str, tuple[int, int]] = {}
        self._copies: dict[str, object] = {}
        self._split = live.split_lookups(context_keys) if context_keys is not None else None

    def of(self, key: Key, features: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> int:
        """The live index's match bits for this key (computed on first use; ``features`` may
        be a function making them, called only then)."""
        found = self.bits.get(key)
        if found is None:
            cache = self.cache
            profile = self.profile_of.get(key[0])
            if cache is not None:
                found = cache.matched(key, profile)
            if found is None:
                found = self._match(key[0], features() if callable(features) else features)
                if cache is not None:  # one copy of the profile per user, for all their keys
                    copied = self._copies.get(key[0], _NOT_COPIED)
                    if copied is _NOT_COPIED:
                        copied = self._copies[key[0]] = (
                            dict(profile) if profile is not None else None
                        )
                    cache.keep_copied(key, cast(dict[str, Any] | None, copied), found)
            self.bits[key] = found
        return found

    def _match(self, user_id: str, features: Mapping[str, Any]) -> int:
        live, split = self.live, self._split
        if split is None:
            return live.match(features).bits
        mine = self._by_user.get(user_id)
        if mine is None:  # the dimensions no context carries: the same for all of them
            mine = self._by_user[user_id] = live.lookup_some(features, split[0])
        fail, verify = live.lookup_some(features, split[1])
        return live.match_from(features, fail | mine[0], verify | mine[1]).bits


class Listed(Matches):
    """``Matches`` with its first ``HEAD`` positions listed once: the replay walks a key's
    match for every request of it (with and without the proposal), and the engine's walk
    rarely goes past its first few candidates, so iterating is a tuple's C iterator."""

    __slots__ = ("head",)

    HEAD = 8

    def __init__(self, bits: int) -> None:
        super().__init__(bits)
        n = self.HEAD
        head: list[int] = []
        w = bits & _HEAD_MASK  # the head from the low bits, without a generator
        while w and len(head) < n:
            low = w & -w
            head.append(low.bit_length() - 1)
            w ^= low
        rest = bits >> HEAD_BITS if len(head) < n else 0
        if rest:  # few in the low bits (3 keys in 4 at 10,000 line items): on, a word at a time
            size = ((rest.bit_length() + 63) // 64) * 8
            for i, w in enumerate(memoryview(rest.to_bytes(size, sys.byteorder)).cast("Q")):
                while w:
                    low = w & -w
                    head.append(HEAD_BITS + 64 * i + low.bit_length() - 1)
                    if len(head) == n:
                        break
                    w ^= low
                if len(head) == n:
                    break
        self.head = tuple(head)

    def __iter__(self) -> Iterator[int]:
        if len(self.head) < self.HEAD:
            return iter(self.head)
        return chain(self.head, islice(Matches.__iter__(self), self.HEAD, None))


class ReplayIndex:
    """What the engine needs of an index (``items``, ``facts``, ``rule_dims``, ``match``).

    Args:
        live: the memoized serving index.
        proposal: the line item to add at its rank, or ``None`` (the replay without it).
        drop_id: a live line item to leave out (the proposal's old self), or ``None``.
        binding: the ids whose budget may bind in this replay (``forecast_twin.binding``),
            when known: every other budget passes every check in any replay, so a line item
            that is ``slow`` only for its budget is walked on the fast path (its flight
            bounds), as one without a budget, instead of reading its spend at each request.
            The proposal's own budget is always checked.
    """

    def __init__(
        self,
        live: LiveMatches,
        proposal: LiveLineItem | None,
        drop_id: int | None,
        binding: AbstractSet[int] | None = None,
    ) -> None:
        index = live.live
        self.live = live
        self.version = f"{index.version}+forecast"
        self.not_live = index.not_live
        items = list(index.items)
        facts: list[Facts] = list(index.facts)
        dims = list(index.rule_dims)
        self._drop = index.position_of.get(drop_id) if drop_id is not None else None
        if self._drop is not None:
            del items[self._drop], facts[self._drop], dims[self._drop]
        self._at: int | None = None
        if proposal is not None:
            keys = [it.rank_key() for it in items]
            self._at = bisect_left(keys, proposal.rank_key())
            items.insert(self._at, proposal)
            facts.insert(self._at, facts_of(proposal))
            dims.insert(self._at, compile_item_rule(proposal.rule).reads)
        if binding is not None:
            mine = proposal.id if proposal is not None else None
            facts = [
                fact._replace(slow=False)
                if fact.slow and it.dayparting is None and it.id not in binding and it.id != mine
                else fact
                for it, fact in zip(items, facts, strict=True)
            ]
        self.items: tuple[LiveLineItem, ...] = tuple(items)
        self.facts: tuple[Facts, ...] = tuple(facts)
        self.rule_dims: tuple[frozenset[str], ...] = tuple(dims)
        self.position_of = {it.id: p for p, it in enumerate(self.items)}
        self._key: Key = ("", "")
        self._hit = False
        self._memo: dict[Key, Matches] = {}
        # the positions below the proposal's and below the dropped one: non-negative masks
        # (``~mask`` is a negative int, and CPython's ``&`` with one copies and complements
        # both 10,000-bit operands: that and its add were 4% of a cold forecast)
        self._below = (1 << self._at) - 1 if self._at is not None else 0
        self._below_drop = (1 << self._drop) - 1 if self._drop is not None else 0

    def __len__(self) -> int:
        return len(self.items)

    def use(self, key: Key, proposal_matches: bool) -> None:
        """The request the next ``match`` is for, and whether the proposal's rule holds."""
        self._key = key
        self._hit = proposal_matches

    def match(self, features: Mapping[str, Any]) -> Matches:
        """The live index's answer at this index's positions (see the module docstring), for
        the request named by ``use``."""
        return self.matched(self._key, self._hit, lambda _uid, _ctx: features)

    def matched(
        self, key: Key, proposal_matches: bool, features: Callable[[str, str], Mapping[str, Any]]
    ) -> Matches:
        """``match`` for the request ``key`` (user, context), memoized per key; ``features(
        user, context)`` is called only when the serving index has not matched the key yet."""
        found = self._memo.get(key)
        if found is not None:
            return found
        bits = self.live.of(key, partial(features, *key))
        if self._drop is not None:  # (bits below r) | (bits above r) >> 1
            r = self._drop
            bits = (bits & self._below_drop) | ((bits >> (r + 1)) << r)
        if self._at is not None:  # (bits below q) | (bits from q) << 1 | proposal at q
            low = bits & self._below  # small: the proposal ranks near the top
            if low:
                bits ^= low
            low |= int(proposal_matches) << self._at
            bits = (bits << 1) | low if low else bits << 1  # one or two 10,000-bit ints made
        found = self._memo[key] = Listed(bits)
        return found


def competitors_of(
    live: LiveMatches,
    rows: Sequence[Replayed],
    features: Callable[[str, str], Mapping[str, Any]],
    proposal_id: int,
) -> list[LiveLineItem]:
    """The live line items any replayed request matches (they are the competition; the
    proposal's old self is not). One memoized ``match`` per distinct (user, context)."""
    keys = dict.fromkeys(map(attrgetter("user_id", "context"), rows))  # distinct, C loops
    positions = 0
    for key in keys:  # (user_id, context), in the rows' order
        positions |= live.of(key, partial(features, *key))
    items = live.live.items
    return [items[p] for p in positions_list(positions) if items[p].id != proposal_id]
