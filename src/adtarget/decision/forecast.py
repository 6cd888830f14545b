"""Forecast a line item before it is booked: replay the sampled requests through the real engine.

Why a replay and not a model: the answer must be what the decision engine would do, so the
forecast runs the engine's own walk (``DecisionEngine.serve_matched``: what ``decide`` runs after
its match) — the same index, eligibility (flights, dayparting, budgets, pacing), frequency caps
and ranking — on an index holding the proposal and
every live line item that competes for the same requests. Nothing is simplified; what differs
from serving is only where the inputs come from:

- requests: the sampled log (``request_log.py``), a logged day per flight day
  (``forecast_window.py``), each row standing for ``1 / sample_rate`` users' worth;
- counters: a fresh in-memory store (the replay's own impressions), exact per user because the
  log keeps every request of a sampled user;
- spend: delivered spend so far plus the replay's own spend scaled by ``1 / sample_rate``.

Only the sampled users the proposal can reach (at least one of their requests matches it) are
replayed, with all their requests, so their caps are exact; competitors' budgets see the spend
they win on those users plus what they had delivered, not the spend on users the proposal cannot
reach (see ``docs/forecasting.md``).
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple, cast

import pyarrow as pa
import pyarrow.compute as pc

from adtarget.decision.bits import positions_list
from adtarget.decision.counters import MemoryCounters
from adtarget.decision.eligibility import SpendSource, has_budget, utc
from adtarget.decision.engine import DecisionEngine, StaticIndex, formats_of
from adtarget.decision.forecast_cache import cache_for
from adtarget.decision.forecast_fork import can_fork, run_forked
from adtarget.decision.forecast_index import LiveMatches, ReplayIndex
from adtarget.decision.forecast_reach import PROGRESS_EVERY, Reach, find_reach
from adtarget.decision.forecast_spend import Charge, FixedSpend, Read, ReplaySpend, parts_agree
from adtarget.decision.forecast_window import DayPlan, Replayed, plan_days, replay_table, rows_of
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import LiveLineItem, PodSpec
from adtarget.decision.pods import replayed_pod
from adtarget.decision.profiles import MemoryProfileStore, ProfileStore
from adtarget.decision.request_store import RequestStore
from adtarget.errors import InvalidValue

Z95 = 1.959963984540054
MAX_WINDOW_DAYS = 366
"""The most days of a flight one forecast replays (``window_of``)."""
MAX_PROCESSES = 4
"""Forked processes a replay is split across at most (one per core up to this)."""
PARALLEL_MIN_ROWS = 10_000
"""Fewer replayed rows than this replay in process (a fork costs more than it saves)."""
Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: the CLI's Rich bar, or nothing."""


@dataclass(slots=True)
class _Tally:
    matched: float = 0.0
    available: float = 0.0
    forecast: float = 0.0
    lost: dict[int, float] = field(default_factory=dict)
    taken: dict[int, float] = field(default_factory=dict)
    per_user: dict[str, float] = field(default_factory=dict)
    processes: int = 1
    """Processes the replay ran in (its parts' answers were used)."""


def flight_of(item: LiveLineItem, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Where the proposal may serve: its own flight inside its campaign's (both ends needed,
    and, with ``now``, an end after it: a flight that is over has nothing to forecast)."""
    starts = [utc(t) for t in (item.start, item.campaign_start) if t is not None]
    ends = [utc(t) for t in (item.end, item.campaign_end) if t is not None]
    if not starts:
        raise InvalidValue("a forecast needs a flight start", field="start")
    if not ends:
        raise InvalidValue("a forecast needs a flight end", field="end")
    start, end = max(starts), min(ends)
    if end <= start:
        raise InvalidValue("the flight ends before it starts", field="end")
    if now is not None and end <= utc(now):
        raise InvalidValue(
            f"the flight ended at {end.isoformat()}, before now: there is nothing left to forecast",
            field="end",
        )
    return start, end


def window_of(start: datetime, end: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The part of the flight a forecast replays: from ``now`` on (what is past cannot be
    served any more), at most ``MAX_WINDOW_DAYS`` (each day replays a logged day; a flight
    from 0001 to 9999 was a 200 that replayed millions of days). ``window`` in the answer
    says which part was forecast."""
    lo = max(start, utc(now))
    return lo, min(end, lo + timedelta(days=MAX_WINDOW_DAYS))


def no_history(message: str, *, sample_rate: float | None) -> dict[str, Any]:
    """The answer when there is nothing to replay: no invented numbers, and why."""
    return {
        "matched_requests": 0,
        "available_impressions": None,
        "forecast_impressions": None,
        "unique_users": None,
        "contended": [],
        "by_day": [],
        "sample_rate": sample_rate,
        "confidence": {"low": None, "high": None, "level": 0.95},
        "no_history": True,
        "message": message,
    }


def forecast(
    *,
    proposal: LiveLineItem,
    live: LineItemIndex,
    store: RequestStore,
    profiles: ProfileStore,
    spend: SpendSource,
    lookback_days: int = 28,
    now: datetime | None = None,
    progress: Progress | None = None,
    processes: int | None = None,
) -> dict[str, Any]:
    """What ``proposal`` would serve over its flight, and whom it competes with.

    Args:
        proposal: the line item to forecast (a new one, or an existing one with changes: the
            live item with the same id is left out of the competition).
        live: the engine's current index (the competing line items).
        store: the sampled request log.
        profiles: user features (the engine's own store).
        spend: delivered spend so far (budgets and pacing).
        lookback_days: history projected onto the flight.
        now: the current time (tests pin it).
        progress: optional callback ``(stage, done, total)``.
        processes: forked processes to split the replay across (``None``: one per core, up
            to ``MAX_PROCESSES``, from ``PARALLEL_MIN_ROWS`` replayed rows; 1: in process).
    """
    with _collector_paused():
        return _forecast(
            proposal=proposal,
            live=live,
            store=store,
            profiles=profiles,
            spend=spend,
            lookback_days=lookback_days,
            now=now,
            progress=progress,
            processes=processes,
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a forecast runs (left as it was found after).

    Why: a forecast makes hundreds of thousands of small objects (profile copies, rows, match
    bits) in a process whose heap holds millions (the index, profiles), and each full
    collection walks all of them: with the bench's heap not frozen, rows to Python took 3x and
    the reach 1.5x as long. Its objects form no cycles that matter; two forecasts at once only
    mean the collector comes back on when the first ends.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _forecast(
    *,
    proposal: LiveLineItem,
    live: LineItemIndex,
    store: RequestStore,
    profiles: ProfileStore,
    spend: SpendSource,
    lookback_days: int = 28,
    now: datetime | None = None,
    progress: Progress | None = None,
    processes: int | None = None,
) -> dict[str, Any]:
    began = time.perf_counter()
    now = utc(now)
    flight_start, flight_end = flight_of(proposal, now)
    start, end = window_of(flight_start, flight_end, now)
    today = now.date()
    history = [d for d in store.days() if today - timedelta(days=lookback_days) <= d < today]
    if not history:
        return no_history(
            f"no sampled requests in the {lookback_days} days before {today.isoformat()} "
            "(is ADTARGET_REQUEST_LOG_SAMPLE_RATE 0, or the service new?)",
            sample_rate=None,
        )
    plan = plan_days(start, end, history)
    table = replay_table(store, plan, start, end)
    if table.num_rows == 0:
        return no_history("no sampled requests fall inside the flight", sample_rate=None)
    rate = float(pc.min(table.column("sample_rate")).as_py())
    if not proposal.formats:  # any format: a placeholder creative in every format asked
        flat = pc.list_flatten(table.column("formats"))
        asked = {f for f in pc.unique(flat).to_pylist() if f is not None}
        creatives = {f: (0,) for f in asked | set(proposal.creatives) | {"*"}}
        proposal = replace(proposal, creatives=creatives)
    reach = find_reach(proposal, table, profiles, progress)
    if not reach.users:
        users = len(pc.unique(table.column("user_id")))
        return no_history(
            f"none of the {table.num_rows} sampled requests ({users} users) in the replayed "
            "days match the targeting: there is no history for its users",
            sample_rate=rate,
        )
    cache = cache_for(live)
    context_keys = {k for ctx in reach.contexts.values() for k in ctx}
    live_matches = LiveMatches(live, cache, reach.profile_of, context_keys)
    replay_users = set(reach.users)
    replayed = rows_of(_of_users(table, replay_users))
    competitors = _competitors(live_matches, replayed, reach, proposal.id)
    budgeted = {it.id for it in competitors if has_budget(it)}
    if budgeted:  # their budgets are spent on their other users too: replay those as well
        replay_users |= _served_users(table, budgeted)
        replayed = rows_of(_of_users(table, replay_users))
        competitors = _competitors(live_matches, replayed, reach, proposal.id)
    outside = _outside_spend(table, replay_users, competitors)
    drop = proposal.id if proposal.id in live.position_of else None
    index = ReplayIndex(live_matches, proposal, drop)
    without = ReplayIndex(live_matches, None, drop)
    window = _window(store, plan, start, end, drop)
    twins = cache.twins_of(window) if window is not None and not budgeted else None
    inputs = _Inputs(
        reach, spend, today, progress, outside, coupled=bool(budgeted), twins=twins, now=now
    )
    timezones = {it.campaign_id: it.timezone for it in (*competitors, proposal)}
    tally, by_day = _replay(proposal, index, without, replayed, inputs, timezones, processes)
    advertisers = {it.id: it.advertiser_id for it in competitors}
    answer = _answer(proposal, tally, by_day, plan, replayed, reach.users, rate, spend)
    for row in answer["contended"]:
        row["advertiser_id"] = advertisers.get(row["line_item_id"])
    answer["window"] = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "whole_flight": (start, end) == (flight_start, flight_end),
    }
    answer["elapsed_ms"] = round((time.perf_counter() - began) * 1000, 1)
    return answer


def _window(
    store: RequestStore, plan: Sequence[DayPlan], start: datetime, end: datetime, drop: int | None
) -> tuple[Any, ...] | None:
    """What a user's replay without the proposal depends on besides the live index and the
    user's profile (``forecast_cache``), or ``None`` when the store cannot say (not cached)."""
    day_version = getattr(store, "day_version", None)
    if day_version is None:
        return None
    days = tuple((p.flight_day, p.history_day) for p in plan)
    versions = tuple(day_version(d) for d in sorted({p.history_day for p in plan}))
    where = str(getattr(store, "root", None) or getattr(store, "url", ""))
    return (where, start.timestamp(), end.timestamp(), drop, days, versions)


def _of_users(table: pa.Table, users: set[str]) -> pa.Table:
    """The rows of ``table`` whose user is in ``users`` (time order kept)."""
    return table.filter(pc.is_in(table.column("user_id"), pa.array(sorted(users), pa.string())))


def _served_users(table: pa.Table, line_items: set[int]) -> set[str]:
    """Users the log shows being served any of ``line_items`` (in the replayed days)."""
    served = table.column("served").combine_chunks()
    hit = pc.is_in(pc.list_flatten(served), pa.array(sorted(line_items), pa.int64()))
    rows = pc.list_parent_indices(served).filter(hit)
    return set(pc.unique(pc.take(table.column("user_id"), rows)).to_pylist())


def _outside_spend(
    table: pa.Table, reached: set[str], competitors: Sequence[LiveLineItem]
) -> list[tuple[float, int, int, float]]:
    """What budgeted competitors served, per the log, to the users the replay leaves out.

    Their budgets and pacing are spent by all users, so the replay charges these impressions as
    its clock passes them (``ReplaySpend.advance``): a competitor whose budget runs out on
    other users stops competing when it would. Scaled by ``1 / sample_rate`` like the rest.
    """
    budgeted = {it.id: it for it in competitors if has_budget(it)}
    if not budgeted:
        return []
    others = table.filter(pc.invert(pc.is_in(table.column("user_id"), pa.array(sorted(reached)))))
    served = others.column("served").combine_chunks()
    items = pc.list_flatten(served)
    parents = pc.list_parent_indices(served)
    keep = pc.is_in(items, pa.array(sorted(budgeted), pa.int64()))
    ids = items.filter(keep).to_pylist()
    rows = parents.filter(keep)
    ts = pc.take(others.column("ts"), rows).to_pylist()
    rates = pc.take(others.column("sample_rate"), rows).to_pylist()
    out = []
    for when, li, rate in zip(ts, ids, rates, strict=True):
        item = budgeted[li]
        out.append((when, li, item.campaign_id, item.bid_cpm / 1000.0 / rate))
    out.sort(key=lambda event: event[0])  # the table is not in time order (replay_table)
    return out


def _competitors(
    live: LiveMatches, rows: Sequence[Replayed], reach: Reach, proposal_id: int
) -> list[LiveLineItem]:
    """The live line items any replayed request matches (they are the competition; the
    proposal's old self is not). One memoized ``match`` per distinct (user, context)."""
    seen: set[tuple[str, str]] = set()
    positions = 0
    for r in rows:
        key = (r.user_id, r.context)
        if key not in seen:
            seen.add(key)
            positions |= live.of(key, partial(reach.features, r.user_id, r.context))
    items = live.live.items
    return [items[p] for p in positions_list(positions) if items[p].id != proposal_id]


@dataclass(frozen=True, slots=True)
class _Inputs:
    reach: Reach
    spend: SpendSource
    today: date
    progress: Progress | None
    outside: list[tuple[float, int, int, float]]
    coupled: bool = True
    """Whether users' replays are coupled through budgets (a budgeted competitor); if not, a
    user the proposal never served gets the same answers without it, and is not replayed."""
    now: datetime | None = None
    """The forecast's current time (delivered spend is read as of it for forked parts)."""
    twins: dict[str, tuple[dict[str, Any] | None, dict[int, float]]] | None = None
    """Per user, what the replay without the proposal served them (weighted) and the profile
    it was computed from, kept for this window (``forecast_cache``); ``None``: not kept."""


def _replay(
    proposal: LiveLineItem,
    index: ReplayIndex,
    without: ReplayIndex,
    rows: Sequence[Replayed],
    inputs: _Inputs,
    timezones: dict[int, str],
    processes: int | None = None,
) -> tuple[_Tally, list[tuple[float, float]]]:
    """Run every replayed request through the engine, in time order, and count; beside it, a
    twin engine without the proposal, for what the proposal takes from each competitor.

    The twin decides only where its answer can differ. A user's requests give the same answers
    with and without the proposal until the proposal is first served to them: until then the
    twin is told what was served (``record_served``: the same frequency-cap counting, and the
    same spend) instead of deciding again (an ad break the proposal matches parts them too:
    without it the break may fill otherwise). When users are coupled through a budgeted
    competitor, the twin decides every request. When they are not, a user's twin totals do not
    depend on the proposal: those kept from an earlier forecast of the same window are used
    (``inputs.twins``, while the user's profile is unchanged) and the new ones are kept.

    Users are split across forked processes (``_parts``) when the rows are many; budgets
    couple users, so the parts' answers are used only if every budget check agrees with the
    whole replay's spend (``parts_agree``), else the rows are replayed here in one part.

    Returns the tally and, per flight day, (matched requests, forecast impressions).
    """
    profile_of = inputs.reach.profile_of
    kept = inputs.twins if not inputs.coupled else None
    known: dict[str, dict[int, float]] = {}
    if kept is not None:
        for uid in {r.user_id for r in rows}:
            found = kept.get(uid)
            if found is not None and found[0] == profile_of.get(uid):
                known[uid] = found[1]
    budgeted = frozenset(it.id for it in index.items if has_budget(it))
    progress = inputs.progress
    parts: list[_Part] | None = None

    def done(n: int) -> None:
        if progress is not None:
            progress("replaying", n, len(rows))

    split = _parts(rows, index, without, budgeted, processes)
    if split is not None:
        now = inputs.now if inputs.now is not None else datetime.now(UTC)
        budgeted_items = [it for it in (*index.items, *without.items) if it.id in budgeted]
        forked = replace(inputs, spend=FixedSpend.read(inputs.spend, budgeted_items, now))
        tasks = [
            partial(_replay_part, proposal, index, without, part, forked, timezones, known, True)
            for part in split
        ]
        answers = run_forked(tasks, done)
        if answers is not None and (not budgeted or _agree(index, without, answers)):
            parts = answers
    if parts is None:
        whole = _replay_part(proposal, index, without, rows, inputs, timezones, known, False, done)
        parts = [whole]
    done(len(rows))
    tally = _Tally()
    by_day: dict[int, list[float]] = {}
    served_with: dict[int, float] = {}
    served_without: dict[int, float] = {}
    for totals in known.values():
        _add_to(served_without, totals)
    for part in parts:
        tally.matched += part.tally.matched
        tally.available += part.tally.available
        tally.forecast += part.tally.forecast
        _add_to(tally.lost, part.tally.lost)
        tally.per_user.update(part.tally.per_user)
        for day, (matched, served) in part.by_day.items():
            sums = by_day.setdefault(day, [0.0, 0.0])
            sums[0] += matched
            sums[1] += served
        _add_to(served_with, part.served_with)
        for uid, totals in part.fresh.items():
            _add_to(served_without, totals)
            if kept is not None:
                kept[uid] = (_copy(profile_of.get(uid)), totals)
    for li, n in served_without.items():
        if n > served_with.get(li, 0.0):
            tally.taken[li] = n - served_with.get(li, 0.0)
    tally.processes = len(parts)
    span = range(max(by_day, default=-1) + 1)
    return tally, [(by_day.get(i, [0.0, 0.0])[0], by_day.get(i, [0.0, 0.0])[1]) for i in span]


def _copy(profile: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A profile kept past this forecast: a copy (the reach read the store's own mappings)."""
    return dict(profile) if profile is not None else None


def _add_to(totals: dict[int, float], more: dict[int, float]) -> None:
    for li, n in more.items():
        totals[li] = totals.get(li, 0.0) + n


def _parts(
    rows: Sequence[Replayed],
    index: ReplayIndex,
    without: ReplayIndex,
    budgeted: frozenset[int],
    processes: int | None,
) -> list[list[Replayed]] | None:
    """The rows split by user into one part per process, the heaviest users first onto the
    lightest part; ``None``: replay in this process (few rows, one core, or no fork)."""
    if processes is None:
        processes = min(MAX_PROCESSES, _cores()) if len(rows) >= PARALLEL_MIN_ROWS else 1
    if processes < 2 or not can_fork():
        return None
    counts = Counter(r.user_id for r in rows)
    loads = [0] * processes
    owner: dict[str, int] = {}
    for uid, n in counts.most_common():
        k = loads.index(min(loads))
        owner[uid] = k
        loads[k] += n
    split: list[list[Replayed]] = [[] for _ in range(processes)]
    for r in rows:
        split[owner[r.user_id]].append(r)
    return [part for part in split if part]


def _cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _agree(index: ReplayIndex, without: ReplayIndex, parts: Sequence[_Part]) -> bool:
    """Whether the parts' budget checks agree with one whole replay's, in both replays."""
    return parts_agree(index.items, [(p.reads, p.charges) for p in parts]) and parts_agree(
        without.items, [(p.twin_reads, p.twin_charges) for p in parts]
    )


@dataclass(slots=True)
class _Part:
    """What one part of the replay counted (its users only), and the spend it read and
    charged (``parts_agree``)."""

    tally: _Tally
    by_day: dict[int, list[float]]
    served_with: dict[int, float]
    fresh: dict[str, dict[int, float]]
    """Twin totals of this part's users not ``known``."""
    reads: list[Read]
    charges: list[Charge]
    twin_reads: list[Read]
    twin_charges: list[Charge]


def _replay_part(
    proposal: LiveLineItem,
    index: ReplayIndex,
    without: ReplayIndex,
    rows: Sequence[Replayed],
    inputs: _Inputs,
    timezones: dict[int, str],
    known: dict[str, dict[int, float]],
    record: bool,
    done: Callable[[int], None],
) -> _Part:
    """The replay of ``rows`` (all the requests of some users), with and without the proposal
    (see ``_replay``); ``known``: twin totals kept from an earlier forecast; ``record``: keep
    the spend read and charged; ``done(rows)``: progress."""
    engine, sim = _engine(index, inputs, timezones, record)
    twin, twin_sim = _engine(without, inputs, timezones, record)
    budgeted = frozenset(it.id for it in index.items if has_budget(it))
    fresh: dict[str, dict[int, float]] = {}  # twin totals of the users not known
    parted: set[str] = set()  # users whose answers without the proposal may differ
    served_with: dict[int, float] = {}
    pid = proposal.id
    rank = proposal.rank_key()
    matches = inputs.reach.matches
    features = inputs.reach.features
    coupled = inputs.coupled
    tally = _Tally()
    by_day: dict[int, list[float]] = {}
    shapes: dict[tuple[Any, ...], _Shape] = {}
    for i, r in enumerate(rows):
        uid = r.user_id
        hit = matches(uid, r.context)
        shape = shapes.get((r.formats, r.pod))
        if shape is None:  # one per distinct (formats, pod) asked
            shape = shapes[(r.formats, r.pod)] = _shape(r)
        picks = _decide(engine, sim, index, r, shape, hit, features, budgeted)
        weight = 1.0 / r.sample_rate
        got = False
        for it, _ in picks:
            li = it.id
            got = got or li == pid
            served_with[li] = served_with.get(li, 0.0) + weight
        if uid not in known:
            mine = fresh.get(uid)
            if mine is None:
                mine = fresh[uid] = {}
            if got or coupled or (hit and r.pod):
                # a break the proposal was walked in may fill otherwise without it (below its
                # min_duration a break is withdrawn whole), so a pod it matches parts the user
                parted.add(uid)
            if uid in parted:
                alone = _decide(twin, twin_sim, without, r, shape, False, features, budgeted)
                for it, _ in alone:
                    mine[it.id] = mine.get(it.id, 0.0) + weight
            elif picks:  # the same answer without the proposal: count it, do not decide it
                twin_sim.advance(r.ts)
                _charge(twin_sim, picks, r, budgeted)
                twin.record_served([it for it, _ in picks], uid, r.ts)
                for it, _ in picks:
                    mine[it.id] = mine.get(it.id, 0.0) + weight
        if i % PROGRESS_EVERY == 0:
            done(i)
        if not hit:
            continue
        day = by_day.setdefault(r.day, [0.0, 0.0])
        tally.matched += weight
        day[0] += weight
        above = [it for it, _ in picks if it.rank_key() < rank]
        if len(above) < r.limit:
            tally.available += weight
        if got:
            tally.forecast += weight
            day[1] += weight
            tally.per_user[uid] = tally.per_user.get(uid, 0.0) + 1.0
        else:
            for it in above:
                tally.lost[it.id] = tally.lost.get(it.id, 0.0) + weight
    done(len(rows))
    return _Part(
        tally, by_day, served_with, fresh, sim.reads, sim.charges, twin_sim.reads, twin_sim.charges
    )


class _Unguarded:
    """The breaker of a store that cannot fail (the replay's in-memory counters): ``call``
    runs the function. A breaker's lock-free check and ``try`` per call were 5% of a forecast;
    spend keeps its real breaker (its base is the delivery log)."""

    state = "closed"

    @staticmethod
    def call(fn: Callable[[], Any]) -> Any:
        """``fn()``."""
        return fn()


_NO_PROFILES = MemoryProfileStore({}, version="forecast")
"""The replay engines' profile store: never read, the replay hands ``serve_matched`` the
match it computed from the profiles the reach step read (``Reach.profile_of``)."""


def _engine(
    index: ReplayIndex,
    inputs: _Inputs,
    timezones: dict[int, str],
    record: bool = False,
) -> tuple[DecisionEngine, ReplaySpend]:
    """The real engine on ``index``, with the replay's own counters and spend (``record``:
    the spend keeps what it read and charged, ``parts_agree``)."""
    sim = ReplaySpend(inputs.spend, today=inputs.today, timezones=timezones, record=record)
    sim.spend_outside(inputs.outside)
    engine = DecisionEngine(
        index_holder=StaticIndex(cast(LineItemIndex, index)),
        profiles=_NO_PROFILES,
        counters=MemoryCounters(),
        spend=sim,
    )
    engine.profile_breaker = engine.counter_breaker = _Unguarded()
    return engine, sim


class _Shape(NamedTuple):
    """What a logged request asks besides who and where: the formats (as ``formats_of``
    gives them) and the ad break."""

    formats: frozenset[str] | None
    single: str | None
    pod: PodSpec | None


def _shape(r: Replayed) -> _Shape:
    formats, single = formats_of(r.formats)
    return _Shape(formats, single, replayed_pod(r.pod) if r.pod else None)


def _decide(
    engine: DecisionEngine,
    sim: ReplaySpend,
    index: ReplayIndex,
    r: Replayed,
    shape: _Shape,
    hit: bool,
    features: Callable[[str, str], Mapping[str, Any]],
    budgeted: frozenset[int],
) -> list[tuple[LiveLineItem, int]]:
    """One logged request through the engine at its own time, its wins charged at the row's
    weight: the step both replays (with and without the proposal) share.

    The engine's own walk (``DecisionEngine.serve_matched``: eligibility, pods, creatives,
    caps) on the replay index's match for (user, context), memoized; ``hit`` says whether the
    proposal's rule holds there, ``features(user, context)`` makes the features on the first
    match of a key; ``budgeted``: the line items whose spend is read."""
    sim.advance(r.ts)
    matched = index.matched((r.user_id, r.context), hit, features)
    walked = cast(LineItemIndex, index)  # what the walk reads: items, facts, rule_dims
    picks = engine.serve_matched(
        walked, matched, r.user_id, r.ts, shape.formats, shape.single, r.limit, shape.pod
    )
    if picks and budgeted:
        _charge(sim, picks, r, budgeted)
    return picks


def _charge(
    sim: ReplaySpend,
    picks: Sequence[tuple[LiveLineItem, int]],
    r: Replayed,
    budgeted: frozenset[int],
) -> None:
    """Charge what ``r`` served to the replay's spend, at the row's weight.

    Only line items with a budget (their own or their campaign's: ``has_budget``) are charged:
    the engine reads spend for no other, and a campaign with a budget makes each of its line
    items budgeted, so its spend is complete."""
    weight = 1.0 / r.sample_rate
    when: datetime | None = None
    for it, _ in picks:
        if it.id in budgeted:
            when = when if when is not None else datetime.fromtimestamp(r.ts, UTC)
            sim.charge(it.id, it.campaign_id, it.bid_cpm * weight / 1000.0, when)


def _interval(
    tally: _Tally, rows: Sequence[Replayed], reached: set[str], cap: float | None
) -> tuple[float, float]:
    """A 95% interval for the forecast over the users the proposal reaches.

    Two sources of error, added: sampling (which users were logged: the Horvitz-Thompson
    variance ``sum((1 - p) * (y / p)^2)``) and the future itself (each user's impressions in the
    flight are a fresh draw: ``sum((1 / p) * (y - mean)^2)``, the spread between users' counts).
    """
    rate_of: dict[str, float] = {}
    for r in rows:
        if r.user_id in reached:
            rate_of.setdefault(r.user_id, r.sample_rate)
    counts = [tally.per_user.get(u, 0.0) for u in rate_of]
    n = len(counts)
    mean = sum(counts) / n if n else 0.0
    var = 0.0
    for u, y in zip(rate_of, counts, strict=True):
        p = rate_of[u]
        var += (1.0 - p) * (y / p) ** 2 + (y - mean) ** 2 / p
    if n > 1:
        var *= n / (n - 1)
    half = Z95 * math.sqrt(var)
    low, high = max(0.0, tally.forecast - half), tally.forecast + half
    if cap is not None:
        high = min(high, max(cap, tally.forecast))
    return low, high


def _answer(
    proposal: LiveLineItem,
    tally: _Tally,
    by_day: list[tuple[float, float]],
    plan: Sequence[DayPlan],
    rows: Sequence[Replayed],
    reached: set[str],
    rate: float | None,
    spend: SpendSource,
) -> dict[str, Any]:
    cap = None
    if proposal.budget_total is not None and proposal.bid_cpm > 0:
        left = max(0.0, proposal.budget_total - spend.spend(proposal.id))
        cap = left / proposal.bid_cpm * 1000.0
    low, high = _interval(tally, rows, reached, cap)
    rate_of = {r.user_id: r.sample_rate for r in rows}
    unique = sum(1.0 / rate_of[u] for u, n in tally.per_user.items() if n > 0)
    ids = sorted(set(tally.lost) | set(tally.taken))
    contended = [
        {
            "line_item_id": li,
            "impressions_lost_to_it": round(tally.lost.get(li, 0.0)),
            "impressions_taken_from_it": round(tally.taken.get(li, 0.0)),
        }
        for li in ids
    ]
    contended.sort(key=lambda c: -(c["impressions_lost_to_it"] + c["impressions_taken_from_it"]))
    days = []
    for i, p in enumerate(plan):
        matched, got = by_day[i] if i < len(by_day) else (0.0, 0.0)
        days.append(
            {
                "date": p.flight_day.isoformat(),
                "history_day": p.history_day.isoformat(),
                "same_weekday": p.same_weekday,
                "matched_requests": round(matched),
                "forecast_impressions": round(got),
            }
        )
    return {
        "matched_requests": round(tally.matched),
        "available_impressions": round(tally.available),
        "forecast_impressions": round(tally.forecast),
        "unique_users": round(unique),
        "contended": contended,
        "by_day": days,
        "sample_rate": rate,
        "confidence": {"low": math.floor(low), "high": math.ceil(high), "level": 0.95},
        "no_history": False,
        "replayed_requests": len(rows),
        "replayed_users": len(rate_of),
        "reached_users": len(reached),
        "replay_processes": tally.processes,
    }
