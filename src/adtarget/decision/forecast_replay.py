"""The replay of a forecast: every replayed request through the engine, with and without the
proposal, in time order, in this process or split by user across forked processes.

Why its own module: it is the part of a forecast that runs the engine (``DecisionEngine.
serve_matched``, the walk ``decide`` runs after its match) with the replay's own counters and
spend (``forecast_spend.py``); ``forecast.py`` gathers its inputs and turns its tally into the
answer. When the replay without the proposal must decide a request is ``forecast_twin.py``'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import partial
from typing import Any, NamedTuple, cast

from adtarget.decision.bits import Matches
from adtarget.decision.counters import MemoryCounters
from adtarget.decision.eligibility import SpendSource, has_budget
from adtarget.decision.engine import DecisionEngine, StaticIndex, formats_of
from adtarget.decision.forecast_fork import can_fork, run_forked
from adtarget.decision.forecast_fork import cores as _cores
from adtarget.decision.forecast_index import ReplayIndex
from adtarget.decision.forecast_reach import PROGRESS_EVERY, Reach
from adtarget.decision.forecast_spend import Charge, FixedSpend, Read, ReplaySpend, parts_agree
from adtarget.decision.forecast_twin import Divergence
from adtarget.decision.forecast_walks import Walks
from adtarget.decision.forecast_window import Replayed
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import LiveLineItem, PodSpec
from adtarget.decision.pods import replayed_pod
from adtarget.decision.profiles import MemoryProfileStore

MAX_PROCESSES = 4
"""Forked processes a replay is split across at most (one per core up to this)."""
PARALLEL_MIN_ROWS = 10_000
"""Fewer replayed rows than this replay in process (a fork costs more than it saves)."""
Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: the CLI's Rich bar, or nothing."""


@dataclass(slots=True)
class Tally:
    matched: float = 0.0
    available: float = 0.0
    forecast: float = 0.0
    lost: dict[int, float] = field(default_factory=dict)
    taken: dict[int, float] = field(default_factory=dict)
    per_user: dict[str, float] = field(default_factory=dict)
    processes: int = 1
    """Processes the replay ran in (its parts' answers were used)."""


@dataclass(frozen=True, slots=True)
class Inputs:
    reach: Reach
    spend: SpendSource
    today: date
    progress: Progress | None
    outside: list[tuple[float, int, int, float]]
    coupled: bool = True
    """Whether users' replays are coupled through a budget that can bind (``binding``); if
    not, a user's replay without the proposal depends on that user alone, and is kept."""
    binding: frozenset[int] = frozenset()
    """Competitors whose budget may bind in this replay (``forecast_twin.binding``)."""
    twin_full: bool = False
    """The replay without the proposal decides every request (tests: it answers the same)."""
    walks_off: bool = False
    """Every request is decided, none reuses a kept answer (tests: it answers the same)."""
    now: datetime | None = None
    """The forecast's current time (delivered spend is read as of it for forked parts)."""
    twins: dict[str, tuple[dict[str, Any] | None, dict[int, float]]] | None = None
    """Per user, what the replay without the proposal served them (weighted) and the profile
    it was computed from, kept for this window (``forecast_cache``); ``None``: not kept."""


def replay(
    proposal: LiveLineItem,
    index: ReplayIndex,
    without: ReplayIndex,
    rows: Sequence[Replayed],
    inputs: Inputs,
    timezones: dict[int, str],
    processes: int | None = None,
) -> tuple[Tally, list[tuple[float, float]]]:
    """Run every replayed request through the engine, in time order, and count; beside it, a
    twin engine without the proposal, for what the proposal takes from each competitor.

    The twin decides only where its answer can differ (``forecast_twin.Divergence``): where
    the proposal was served, in an ad break it matches, or where its walk reaches a candidate
    whose counters or spend the two replays have made different; elsewhere it is told what was
    served (``record_served``: the same frequency-cap counting, and the same spend). When no
    budget that can bind couples users, a user's twin totals do not depend on the proposal:
    those kept from an earlier forecast of the same window are used (``inputs.twins``, while the
    user's profile is unchanged) and the new ones are kept.

    Users are split across forked processes (``_parts``) when the rows are many; budgets
    couple users, so the parts' answers are used only if every budget check agrees with the
    whole replay's spend (``parts_agree``), else the rows are replayed here in one part.

    Returns the tally and, per flight day, (matched requests, forecast impressions).
    """
    profile_of = inputs.reach.profile_of
    kept = inputs.twins if not inputs.coupled else None
    known = known_twins(rows, kept, profile_of)
    budgeted = frozenset(it.id for it in index.items if has_budget(it))
    progress = inputs.progress
    parts: list[Part] | None = None

    def done(n: int) -> None:
        if progress is not None:
            progress("replaying", n, len(rows))

    split = _parts(rows, index, without, budgeted, processes)
    if split is not None:
        now = inputs.now if inputs.now is not None else datetime.now(UTC)
        budgeted_items = [it for it in (*index.items, *without.items) if it.id in budgeted]
        forked = replace(inputs, spend=FixedSpend.read(inputs.spend, budgeted_items, now))
        tasks = [
            partial(replay_part, proposal, index, without, part, forked, timezones, known, True)
            for part in split
        ]
        answers = run_forked(tasks, done)
        if answers is not None and (
            not budgeted or parts_alike(index.items, without.items, answers)
        ):
            parts = answers
    if parts is None:
        whole = replay_part(proposal, index, without, rows, inputs, timezones, known, False, done)
        parts = [whole]
    done(len(rows))
    return combine(parts, known, kept, profile_of)


def known_twins(
    rows: Sequence[Replayed],
    kept: dict[str, tuple[dict[str, Any] | None, dict[int, float]]] | None,
    profile_of: Mapping[str, Mapping[str, Any] | None],
) -> dict[str, dict[int, float]]:
    """The twin totals kept (``Inputs.twins``) for the users of ``rows`` whose profile is
    still the one they were computed from."""
    known: dict[str, dict[int, float]] = {}
    if kept is not None:
        for uid in {r.user_id for r in rows}:
            found = kept.get(uid)
            if found is not None and found[0] == profile_of.get(uid):
                known[uid] = found[1]
    return known


def combine(
    parts: Sequence[Part],
    known: dict[str, dict[int, float]],
    kept: dict[str, tuple[dict[str, Any] | None, dict[int, float]]] | None,
    profile_of: Mapping[str, Mapping[str, Any] | None],
) -> tuple[Tally, list[tuple[float, float]]]:
    """The parts' counts added up (each holds whole users), what the proposal takes from each
    competitor (without it minus with it, over every user), and the new twin totals kept
    (with a copy of the profile from ``profile_of``)."""
    tally = Tally()
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


def parts_alike(
    items: Sequence[LiveLineItem], twin_items: Sequence[LiveLineItem], parts: Sequence[Part]
) -> bool:
    """Whether the parts' budget checks agree with one whole replay's, in both replays
    (``items``: the line items of the replay with the proposal, ``twin_items`` without)."""
    return parts_agree(items, [(p.reads, p.charges) for p in parts]) and parts_agree(
        twin_items, [(p.twin_reads, p.twin_charges) for p in parts]
    )


@dataclass(slots=True)
class Part:
    """What one part of the replay counted (its users only), and the spend it read and
    charged (``parts_agree``)."""

    tally: Tally
    by_day: dict[int, list[float]]
    served_with: dict[int, float]
    fresh: dict[str, dict[int, float]]
    """Twin totals of this part's users not ``known``."""
    reads: list[Read]
    charges: list[Charge]
    twin_reads: list[Read]
    twin_charges: list[Charge]


def replay_part(
    proposal: LiveLineItem,
    index: ReplayIndex,
    without: ReplayIndex,
    rows: Sequence[Replayed],
    inputs: Inputs,
    timezones: dict[int, str],
    known: dict[str, dict[int, float]],
    record: bool,
    done: Callable[[int], None],
) -> Part:
    """The replay of ``rows`` (all the requests of some users), with and without the proposal
    (see ``_replay``); ``known``: twin totals kept from an earlier forecast; ``record``: keep
    the spend read and charged; ``done(rows)``: progress."""
    engine, sim = _engine(index, inputs, timezones, record)
    twin, twin_sim = _engine(without, inputs, timezones, record)
    # spend is charged where a check could notice it: a budget that cannot bind passes every
    # check whatever the replay charges it (``forecast_twin.binding`` bounds all it could)
    budgeted = inputs.binding | ({proposal.id} if has_budget(proposal) else frozenset())
    fresh: dict[str, dict[int, float]] = {}  # twin totals of the users not known
    differ = Divergence(index.items, proposal.id, inputs.binding, inputs.twin_full)
    same = differ.same
    of_user = differ.of_user
    first, last = (rows[0].ts, rows[-1].ts) if rows else (0.0, 0.0)
    ours = inputs.binding | {proposal.id}  # the proposal's own budget may bind
    walks = Walks(index.items, index.facts, ours, first, last, inputs.walks_off)
    twin_walks = Walks(without.items, without.facts, ours, first, last, inputs.walks_off)
    reads = sim.reads
    served_with: dict[int, float] = {}
    pid = proposal.id
    rank = proposal.rank_key()
    matches = inputs.reach.matches
    features = inputs.reach.features
    tally = Tally()
    by_day: dict[int, list[float]] = {}
    shapes: dict[tuple[Any, ...], _Shape] = {}
    for i, r in enumerate(rows):
        uid = r.user_id
        hit = matches(uid, r.context)
        shape = shapes.get((r.formats, r.pod))
        if shape is None:  # one per distinct (formats, pod) asked
            shape = shapes[(r.formats, r.pod)] = _shape(r)
        was_read = len(reads)
        matched = index.matched((uid, r.context), hit, features)
        walk = (uid, r.context, r.formats, r.limit) if r.pod is None else None
        picks = walks.kept.get(walk) if walk is not None else None
        if picks is None:
            picks = _decide(engine, sim, index, r, shape, matched, budgeted)
            if walk is not None:
                walks.keep(walk, matched.bits, picks, r.limit)
        elif picks and budgeted:  # decided before, by a walk nothing can change: charge it
            _charge(sim, picks, r, budgeted)
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
            # a break the proposal was walked in may fill otherwise without it (below its
            # min_duration a break is withdrawn whole), so the twin decides a pod it matches
            if (
                got
                or (hit and r.pod)
                or (
                    (uid in of_user or differ.spent)
                    and not same(uid, matched.bits, picks, r.limit, r.pod is not None)
                )
            ):
                bare = without.matched((uid, r.context), False, features)
                alone = twin_walks.kept.get(walk) if walk is not None else None
                if alone is None:
                    alone = _decide(twin, twin_sim, without, r, shape, bare, budgeted)
                    if walk is not None:
                        twin_walks.keep(walk, bare.bits, alone, r.limit)
                elif alone and budgeted:
                    _charge(twin_sim, alone, r, budgeted)
                differ.parted(uid, picks, alone)
                for it, _ in alone:
                    mine[it.id] = mine.get(it.id, 0.0) + weight
            else:  # the same answer without the proposal: count it, do not decide it
                if record:  # the twin would have read what this walk read (parts_agree)
                    twin_sim.reads.extend(reads[was_read:])
                if picks:
                    if budgeted:
                        twin_sim.advance(r.ts)
                        _charge(twin_sim, picks, r, budgeted)
                    capped = [it for it, _ in picks if it.caps]
                    if capped:
                        twin.record_served(capped, uid, r.ts)
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
    return Part(
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
    inputs: Inputs,
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
    matched: Matches,
    budgeted: frozenset[int],
) -> list[tuple[LiveLineItem, int]]:
    """One logged request through the engine at its own time, its wins charged at the row's
    weight: the step both replays (with and without the proposal) share.

    The engine's own walk (``DecisionEngine.serve_matched``: eligibility, pods, creatives,
    caps) on ``matched``, the replay index's match for (user, context), memoized
    (``ReplayIndex.matched``); ``budgeted``: the line items whose spend is charged."""
    sim.advance(r.ts)
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

    Only ``budgeted`` line items are charged: those whose budget (their own or their
    campaign's) may bind in the replay (``forecast_twin.binding``), and the proposal's. The
    engine reads spend for no other line item, or for one whose every check passes whatever the
    replay charges it; a campaign with a budget makes each of its line items budgeted and binds
    for all of them alike, so its spend is complete."""
    weight = 1.0 / r.sample_rate
    when: datetime | None = None
    for it, _ in picks:
        if it.id in budgeted:
            when = when if when is not None else datetime.fromtimestamp(r.ts, UTC)
            sim.charge(it.id, it.campaign_id, it.bid_cpm * weight / 1000.0, when)
