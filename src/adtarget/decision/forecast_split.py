"""A forecast split by user across forked processes from the reach on, when no budget can
couple users.

Why: the replay alone ran split (``forecast_replay``), but the reach (the proposal's rule over
every sampled user) and the serving index's matches for the users it reaches ran before it,
in one process: a third of a cold forecast's time, on one core. Each of those steps, like a
user's replay, reads that user alone — unless a budget ties users together, and whether one
can is known before any of them: ``forecast_twin.binding`` over *every* live budgeted line
item is a superset of the one over the competitors the reach would find. When it is empty,
each forked process takes every ``n``-th sampled user (by their position among the window's
distinct users), finds which of them the proposal reaches, matches them, and replays them, as
``forecast.py`` does for all users in process; this process adds the parts up.

The proposal's own budget still couples users: each part records the budget checks it made
and the spend it charged, and the parts are used only if ``forecast_replay.parts_alike``
says one whole replay would have checked the same; otherwise (and when a process fails) the
caller forecasts as before. The twin totals the processes made are sent back and kept
(``forecast_cache``) for the next forecast of the same window; the serving index's matches
are not: sending ~12 MB of them back and unpickling it took ~100 ms of a forecast, more than
the next forecast's processes take to match their users again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import pyarrow as pa

from adtarget.decision.eligibility import SpendSource, has_budget
from adtarget.decision.forecast_cache import cache_for
from adtarget.decision.forecast_fork import can_fork, run_forked
from adtarget.decision.forecast_fork import cores as _cores
from adtarget.decision.forecast_index import LiveMatches, ReplayIndex, competitors_of
from adtarget.decision.forecast_reach import Sampled, find_reach, sampled
from adtarget.decision.forecast_replay import (
    MAX_PROCESSES,
    Inputs,
    Part,
    Progress,
    Tally,
    combine,
    known_twins,
    parts_alike,
    replay_part,
)
from adtarget.decision.forecast_spend import FixedSpend
from adtarget.decision.forecast_twin import binding
from adtarget.decision.forecast_window import Rates, merge_rates, rates_of, rows_of
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import LiveLineItem
from adtarget.decision.profiles import ProfileStore

MIN_ROWS = 200_000
"""Fewer sampled rows in the window than this forecast in one process (the reach and the
matches are then too short for two processes to pay for the fork)."""

Profile = dict[str, Any] | None


@dataclass(slots=True)
class Share:
    """What one process found for its users (sent back pickled)."""

    part: Part | None
    """Its replay (``None``: none of its users is reached)."""
    users: set[str]
    """Its users the proposal reaches."""
    rates: Rates
    known: dict[str, dict[int, float]]
    """Twin totals it used from the cache (``forecast_replay.known_twins``)."""
    profiles: dict[str, Mapping[str, Any] | None] = field(default_factory=dict)
    """The profiles its fresh twin totals were computed from (pickling sends copies)."""


@dataclass(slots=True)
class Split:
    """The parts added up, or ``coupled``: the proposal's own budget made the parts' checks
    differ from one replay's (the caller replays in one process, not split again)."""

    tally: Tally = field(default_factory=Tally)
    by_day: list[tuple[float, float]] = field(default_factory=list)
    users: set[str] = field(default_factory=set)
    rates: Rates = field(default_factory=lambda: Rates({}, {}, 0))
    coupled: bool = False


def by_user(
    proposal: LiveLineItem,
    live: LineItemIndex,
    table: pa.Table,
    profiles: ProfileStore,
    spend: SpendSource,
    now: datetime,
    window: Hashable | None,
    processes: int | None,
    progress: Progress | None,
) -> Split | None:
    """The forecast's counts with every user's part done in forked processes, or ``None``
    when it is not split (one process asked, one core, few rows, a budget that may couple
    users, a part that failed, a profile store with no ``fork_reader``): the caller then
    forecasts in this process; a ``Split`` that is ``coupled`` when the parts' budget checks
    differ from one replay's. The children read profiles through ``profiles.fork_reader()``,
    made here before the fork (no lock a thread of this process may hold is taken after it)."""
    n = _processes(processes, table.num_rows)
    fork_reader = getattr(profiles, "fork_reader", None)
    if n < 2 or fork_reader is None:  # a store with no reader safe in a forked process
        return None
    budgeted = [it for it in live.items if has_budget(it) and it.id != proposal.id]
    if binding(budgeted, table, spend, now, proposal):
        return None  # a competitor's budget may bind: users are coupled
    fixed = FixedSpend.read(spend, [*budgeted, proposal] if has_budget(proposal) else budgeted, now)
    cache = cache_for(live)
    twins = cache.twins_of(window) if window is not None else None
    hashed = sampled(table)  # once, here: every process would hash the same million ids
    task = partial(_share, proposal, live, table, hashed, fork_reader(), fixed, now, twins, n)
    report = None
    if progress is not None:
        report = lambda done, total: progress("replaying", done, total)  # noqa: E731
    shares: list[Share] | None = run_forked([partial(task, k) for k in range(n)], None, report)
    if shares is None:
        return None
    parts = [s.part for s in shares if s.part is not None]
    if (budgeted or has_budget(proposal)) and not _alike(live, proposal, parts):
        return Split(coupled=True)
    known: dict[str, dict[int, float]] = {}
    copies: dict[str, Mapping[str, Any] | None] = {}
    for share in shares:
        known.update(share.known)
        copies.update(share.profiles)
    tally, by_day = combine(parts, known, twins, copies)
    tally.processes = n
    users = set().union(*(s.users for s in shares))
    return Split(tally, by_day, users, merge_rates([s.rates for s in shares]))


def _alike(live: LineItemIndex, proposal: LiveLineItem, parts: list[Part]) -> bool:
    """Whether the parts' budget checks are those of one replay of all their users (the
    line items as the replays hold them: the proposal in, its old self out)."""
    others = [it for it in live.items if it.id != proposal.id]
    return parts_alike([*others, proposal], others, parts)


def _processes(asked: int | None, rows: int) -> int:
    if asked is None:
        asked = min(MAX_PROCESSES, _cores()) if rows >= MIN_ROWS else 1
    return asked if asked >= 2 and can_fork() else 1


def _share(
    proposal: LiveLineItem,
    live: LineItemIndex,
    table: pa.Table,
    hashed: Sampled,
    profiles: ProfileStore,
    spend: FixedSpend,
    now: datetime,
    twins: dict[str, tuple[Profile, dict[int, float]]] | None,
    n: int,
    k: int,
    done: Callable[..., None],
) -> Share:
    """Process ``k`` of ``n``: the forecast of every ``n``-th user, as ``forecast._forecast``
    makes it in one process (run in a forked child: nothing it changes is seen by the
    parent, which gets the ``Share``)."""
    alive = lambda *_: done(0, 0)  # noqa: E731  (a heartbeat: forecast_fork.STALL_S)
    reach = find_reach(proposal, table, profiles, alive, share=(k, n), hashed=hashed)
    if not reach.users:
        return Share(None, set(), Rates({}, {}, 0), {})
    context_keys = {key for ctx in reach.contexts.values() for key in ctx}
    matches = LiveMatches(live, None, reach.profile_of, context_keys)
    replayed = rows_of(table.filter(reach.rows))
    done(0, len(replayed))
    competitors = competitors_of(matches, replayed, reach.features, proposal.id)
    drop = proposal.id if proposal.id in live.position_of else None
    index = ReplayIndex(matches, proposal, drop, frozenset())  # no budget binds: split
    without = ReplayIndex(matches, None, drop, frozenset())
    inputs = Inputs(reach, spend, now.date(), None, [], coupled=False, twins=twins, now=now)
    timezones = {it.campaign_id: it.timezone for it in (*competitors, proposal)}
    known = known_twins(replayed, twins, reach.profile_of)
    part = replay_part(
        proposal,
        index,
        without,
        replayed,
        inputs,
        timezones,
        known,
        True,
        lambda rows: done(rows, len(replayed)),
    )
    copies = {uid: reach.profile_of.get(uid) for uid in part.fresh}
    return Share(part, reach.users, rates_of(replayed), known, copies)


__all__ = ["MIN_ROWS", "Share", "Split", "by_user"]
