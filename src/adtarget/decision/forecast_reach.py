"""Which sampled users a proposal can reach: its rule over each user's profile and context.

Why per user first: the conjuncts of a rule that read no request-context key give the same
answer for every request of a user, so they are evaluated once per distinct user (one profile
read each); only the conjuncts that read a context key (``device``, say) are evaluated per
distinct (user, context) pair, and only for the users the first part let through. Distinct
users and pairs come from Arrow's hash grouping, not a Python loop over requests. The per-user
evaluator (``rules.eval_python``) decides, as the index would for the same features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from adtarget.decision.models import LiveLineItem
from adtarget.decision.profiles import ProfileStore, merge_features
from adtarget.rules.ast import SEGMENTS_FIELD, And, Rule, dimensions, segment_names
from adtarget.rules.eval_python import compile_rule

Progress = Callable[[str, int, int], None]
PROGRESS_EVERY = 10_000


@dataclass(slots=True)
class Reach:
    """Profiles read, parsed contexts, and what the proposal's rule matches."""

    profile_of: dict[str, Mapping[str, Any] | None] = field(default_factory=dict)
    """The features of each user the rule's profile part lets through, as the store holds
    them (read-only: ``get_many``); every sampled user's after ``all_profiles``."""
    read: tuple[list[str], list[Mapping[str, Any] | None]] = field(default_factory=lambda: ([], []))
    """Every sampled user and the profile read for them (``all_profiles``)."""
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: set[str] = field(default_factory=set)
    """Users with at least one matching request (all their requests are replayed)."""
    pairs: set[tuple[str, str]] | None = None
    """Matching (user, context) pairs of the contexts not in ``by_context``; ``None``: the rule
    reads no context, every request of a user in ``users`` matches."""
    by_context: dict[str, bool] = field(default_factory=dict)
    """The contexts (JSON text) that decide the rule's context part alone (they carry every
    key it reads: a context's value wins over the profile's), and its answer in each."""
    profile_ok: set[str] = field(default_factory=set)
    """Users the rule's profile part lets through (with ``by_context``)."""
    rows: pa.BooleanArray | None = None
    """Per row of the table, whether its user is in ``users`` (the rows to replay)."""

    def matches(self, user_id: str, context: str) -> bool:
        """Whether a request of ``user_id`` in ``context`` (JSON text) matches the rule."""
        if self.pairs is None:
            return user_id in self.users
        decided = self.by_context.get(context)
        if decided is not None:
            return decided and user_id in self.profile_ok
        return (user_id, context) in self.pairs

    def all_profiles(self) -> None:
        """Put every sampled user's profile in ``profile_of`` (a replay of users the rule does
        not reach: those a budget that may bind serves). Kept apart because most forecasts
        replay only reached users, and 100,000 entries made were 3% of a cold forecast."""
        self.profile_of.update(zip(*self.read, strict=True))

    def features(self, user_id: str, context: str) -> dict[str, Any]:
        """The features the engine sees for this request (profile, then context over it)."""
        return merge_features(self.profile_of.get(user_id), self.contexts[context])


@dataclass(frozen=True, slots=True)
class Sampled:
    """Who and where in a replay table, hashed once per forecast: the distinct users in order
    of first request, each row's user as a position among them, and the distinct contexts
    parsed. A forecast split by user makes it before it forks, so its processes share one
    instead of each hashing a million user ids (60-70 ms per process)."""

    users: list[str]
    positions: pa.Int32Array
    contexts: dict[str, dict[str, Any]]


def sampled(table: pa.Table) -> Sampled:
    """``Sampled`` of ``table``: its two halves' user ids hashed on two threads (Arrow leaves
    the GIL; unifying the halves' dictionaries keeps the order of first request), the contexts
    on a third."""
    ids = table.column("user_id").combine_chunks()
    half = len(ids) // 2
    with ThreadPoolExecutor(2, thread_name_prefix="forecast-hash") as pool:
        texts = pool.submit(pc.unique, table.column("context"))
        halves = list(pool.map(pc.dictionary_encode, (ids.slice(0, half), ids.slice(half))))
        contexts = {text: orjson.loads(text) for text in texts.result().to_pylist()}
    unified = pa.chunked_array(halves, pa.dictionary(pa.int32(), ids.type)).unify_dictionaries()
    users = unified.chunk(0).dictionary.to_pylist()
    positions = pa.concat_arrays([chunk.indices for chunk in unified.chunks])
    return Sampled(users, positions, contexts)


def _reads(rule: Rule) -> set[str]:
    return set(dimensions(rule)) | ({SEGMENTS_FIELD} if segment_names(rule) else set())


def _split(rule: Rule | None, context_keys: set[str]) -> tuple[Rule | None, Rule | None]:
    """The rule as (a part no request context can change, the rest), each ``None`` if empty.

    A conjunct of a top-level ``and`` whose keys no logged context carries is decided by the
    profile alone, once per user; only the other conjuncts need the (user, context) pair.
    """
    if rule is None:
        return None, None
    conjuncts = list(rule.children) if isinstance(rule, And) else [rule]
    profile_part = [c for c in conjuncts if not _reads(c) & context_keys]
    rest = [c for c in conjuncts if _reads(c) & context_keys]

    def joined(parts: list[Rule]) -> Rule | None:
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    return joined(profile_part), joined(rest)


_NO_PROFILE = object()
"""The projection of an unknown user (no profile), apart from any value a profile holds."""


class ByProjection:
    """``rule`` over profiles, evaluated once per distinct value of the keys it reads.

    Why: 100,000 sampled users carry a few hundred distinct (country, age, ...) combinations of
    the handful of keys a rule reads; the rule reads nothing else, so users with equal values
    there get the same answer (the first such user's profile is the one evaluated). ``many``
    projects a batch of profiles with one comprehension and looks the answers up with C loops
    (a Python call per user was 4% of a cold forecast); ``one`` is the same for one profile,
    and the fallback when a value is unhashable (a list where a set is expected).
    """

    def __init__(self, rule: Rule) -> None:
        self._matcher = compile_rule(rule)
        self._names = tuple(sorted(_reads(rule)))
        self._memo: dict[Any, bool] = {}

    def _key(self, profile: Mapping[str, Any] | None) -> Any:
        if not profile:
            return _NO_PROFILE
        if len(self._names) == 1:
            return profile.get(self._names[0])
        return tuple(map(profile.get, self._names))

    def one(self, profile: Mapping[str, Any] | None) -> bool:
        """Whether the rule holds for ``profile``."""
        key = self._key(profile)
        try:
            found = self._memo.get(key)
        except TypeError:
            return self._matcher(merge_features(profile, {}))
        if found is None:
            found = self._memo[key] = self._matcher(merge_features(profile, {}))
        return found

    def many(self, profiles: Sequence[Mapping[str, Any] | None]) -> list[bool]:
        """``[one(p) for p in profiles]``, with the rule evaluated per new distinct key only."""
        names = self._names
        if len(names) == 1:
            name = names[0]
            keys = [p.get(name) if p else _NO_PROFILE for p in profiles]
        else:
            keys = [tuple(map(p.get, names)) if p else _NO_PROFILE for p in profiles]
        memo = self._memo
        try:  # each key's first profile (later ones overwrite earlier in reverse)
            first = dict(zip(reversed(keys), reversed(profiles), strict=True))
        except TypeError:
            return list(map(self.one, profiles))
        for key, profile in first.items():
            if key not in memo:
                memo[key] = self._matcher(merge_features(profile, {}))
        return list(map(memo.__getitem__, keys))  # a dict finds a key by identity first (NaN)


def find_reach(
    proposal: LiveLineItem,
    table: pa.Table,
    profiles: ProfileStore,
    progress: Progress | None = None,
    share: tuple[int, int] | None = None,
    hashed: Sampled | None = None,
) -> Reach:
    """The users (and requests) of ``table`` the proposal's rule matches.

    ``share=(k, n)``: only the ``k``-th of every ``n`` distinct users (in order of first
    appearance) is looked at, the others are left out as if not reached: a forked process's
    share of a forecast split by user (``forecast_split``), without filtering the table.
    ``hashed``: ``sampled(table)``, when the caller made it already."""
    reach = Reach()
    hashed = hashed if hashed is not None else sampled(table)
    reach.contexts = hashed.contexts
    context_keys = {k for ctx in reach.contexts.values() for k in ctx}
    profile_rule, pair_rule = _split(proposal.rule, context_keys)
    profile_part = ByProjection(profile_rule) if profile_rule is not None else None
    by_pair = compile_rule(pair_rule) if pair_rule is not None else None
    reads = _reads(pair_rule) if pair_rule is not None else set()
    users, positions = hashed.users, hashed.positions
    looked_at = users if share is None else users[share[0] :: share[1]]
    profile_of = reach.profile_of
    get_many = getattr(profiles, "get_many", None)  # a batch read, when the store has one
    if get_many is None:
        get = profiles.get
        get_many = lambda ids: list(map(get, ids))  # noqa: E731  (C loop, not a Python one)
    read: list[Mapping[str, Any] | None] = []
    for start in range(0, len(looked_at), PROGRESS_EVERY):
        if progress is not None:
            progress("matching users", start, len(looked_at))
        chunk = looked_at[start : start + PROGRESS_EVERY]
        profs = get_many(chunk)
        read.extend(profs)
        if profile_part is None:
            profile_of.update(zip(chunk, profs, strict=True))
            reach.users.update(chunk)
        else:
            ok = profile_part.many(profs)
            profile_of.update(compress(zip(chunk, profs, strict=True), ok))
            reach.users.update(compress(chunk, ok))
    reach.read = (looked_at, read)
    if by_pair is None or not reach.users:
        reach.rows = _rows_of(positions, users, reach.users)
        return reach
    mine = table.select(["user_id", "context"]).filter(_rows_of(positions, users, reach.users))
    reach.profile_ok, reach.pairs, reach.users = reach.users, set(), set()
    # a context carrying every key the context part reads decides it for all users alike:
    # evaluated once, and its users found by Arrow, not per (user, context) pair
    for text, ctx in reach.contexts.items():
        if reads <= ctx.keys():
            reach.by_context[text] = by_pair(merge_features(None, ctx))
    contexts = mine.column("context")
    passing = [t for t, ok in reach.by_context.items() if ok]
    if passing:
        hit = pc.is_in(contexts, pa.array(passing, pa.string()))
        reach.users.update(pc.unique(mine.column("user_id").filter(hit)).to_pylist())
    rest = [t for t in reach.contexts if t not in reach.by_context]
    if not rest:
        reach.rows = _rows_of(positions, users, reach.users)
        return reach
    mine = mine.filter(pc.is_in(contexts, pa.array(rest, pa.string())))
    pairs = mine.group_by(["user_id", "context"]).aggregate([])
    uids, ctxs = pairs.column("user_id").to_pylist(), pairs.column("context").to_pylist()
    for i, (uid, ctx) in enumerate(zip(uids, ctxs, strict=True)):
        if by_pair(merge_features(reach.profile_of[uid], reach.contexts[ctx])):
            reach.pairs.add((uid, ctx))
            reach.users.add(uid)
        if progress is not None and i % PROGRESS_EVERY == 0:
            progress("matching requests", i, len(uids))
    reach.rows = _rows_of(positions, users, reach.users)
    return reach


def _rows_of(positions: pa.Int32Array, users: list[str], chosen: set[str]) -> pa.Array:
    """Whether each row's user (``positions`` in ``users``) is in ``chosen``."""
    among = pa.array([u in chosen for u in users], pa.bool_())
    return pc.take(among, positions)
