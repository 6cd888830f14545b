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

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pyarrow.compute as pc

from adtarget.audience.gcpause import gc_paused
from adtarget.decision.eligibility import SpendSource, utc
from adtarget.decision.forecast_cache import cache_for
from adtarget.decision.forecast_index import LiveMatches, ReplayIndex, competitors_of
from adtarget.decision.forecast_logged import of_users, outside_spend, served_users
from adtarget.decision.forecast_reach import find_reach
from adtarget.decision.forecast_replay import Inputs, Progress, Tally, replay
from adtarget.decision.forecast_split import by_user
from adtarget.decision.forecast_twin import binding
from adtarget.decision.forecast_window import (
    DayPlan,
    Rates,
    plan_days,
    rates_of,
    replay_table,
    rows_of,
)
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import LiveLineItem
from adtarget.decision.profiles import ProfileStore
from adtarget.decision.request_store import RequestStore
from adtarget.errors import InvalidValue

__all__ = ["Progress", "flight_of", "forecast", "no_history", "window_of"]

Z95 = 1.959963984540054
MAX_WINDOW_DAYS = 366
"""The most days of a flight one forecast replays (``window_of``)."""


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
        processes: forked processes to split the work across (``None``: one per core, up
            to ``MAX_PROCESSES``; 1: in process): every step by user from the reach on
            (``forecast_split``: from ``MIN_ROWS`` sampled rows, when no competitor's budget
            can tie users together), else the replay alone (from ``PARALLEL_MIN_ROWS``
            replayed rows).
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
    with gc_paused():
        yield


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
    drop = proposal.id if proposal.id in live.position_of else None
    window = _window(store, plan, start, end, drop)
    split = by_user(proposal, live, table, profiles, spend, now, window, processes, progress)
    if split is not None and split.coupled:  # its own budget ties users: one replay
        processes, split = 1, None
    if split is not None:  # every user's forecast in forked processes, added up
        if not split.users:
            return _unreached(table, rate)
        answer = _answer(proposal, split.tally, split.by_day, plan, split.rates, split.users,
                         rate, spend)  # fmt: skip
        return _finish(answer, live, start, end, (flight_start, flight_end), began)
    reach = find_reach(proposal, table, profiles, progress)
    if not reach.users:
        return _unreached(table, rate)
    cache = cache_for(live)
    context_keys = {k for ctx in reach.contexts.values() for k in ctx}
    live_matches = LiveMatches(live, cache, reach.profile_of, context_keys)
    replay_users = set(reach.users)
    replayed = rows_of(table.filter(reach.rows))
    competitors = competitors_of(live_matches, replayed, reach.features, proposal.id)
    binds = binding(competitors, table, spend, now, proposal)
    if binds:  # their budgets are spent on their other users too: replay those as well
        reach.all_profiles()
        replay_users |= served_users(table, set(binds))
        replayed = rows_of(of_users(table, replay_users))
        competitors = competitors_of(live_matches, replayed, reach.features, proposal.id)
        binds = binding(competitors, table, spend, now, proposal)
    outside = outside_spend(table, replay_users, competitors)
    binding_ids = set(binds)
    index = ReplayIndex(live_matches, proposal, drop, binding_ids)
    without = ReplayIndex(live_matches, None, drop, binding_ids)
    twins = cache.twins_of(window) if window is not None and not binds else None
    inputs = Inputs(
        reach,
        spend,
        today,
        progress,
        outside,
        coupled=bool(binds),
        binding=binds,
        twins=twins,
        now=now,
    )
    timezones = {it.campaign_id: it.timezone for it in (*competitors, proposal)}
    tally, by_day = replay(proposal, index, without, replayed, inputs, timezones, processes)
    answer = _answer(proposal, tally, by_day, plan, rates_of(replayed), reach.users, rate, spend)
    return _finish(answer, live, start, end, (flight_start, flight_end), began)


def _unreached(table: Any, rate: float) -> dict[str, Any]:
    users = len(pc.unique(table.column("user_id")))
    return no_history(
        f"none of the {table.num_rows} sampled requests ({users} users) in the replayed "
        "days match the targeting: there is no history for its users",
        sample_rate=rate,
    )


def _finish(
    answer: dict[str, Any],
    live: LineItemIndex,
    start: datetime,
    end: datetime,
    flight: tuple[datetime, datetime],
    began: float,
) -> dict[str, Any]:
    """The answer's contended line items' advertisers, its window and its time."""
    for row in answer["contended"]:
        at = live.position_of.get(row["line_item_id"])
        row["advertiser_id"] = live.items[at].advertiser_id if at is not None else None
    answer["window"] = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "whole_flight": (start, end) == flight,
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


def _interval(
    tally: Tally, rates: Rates, reached: set[str], cap: float | None
) -> tuple[float, float]:
    """A 95% interval for the forecast over the users the proposal reaches.

    Two sources of error, added: sampling (which users were logged: the Horvitz-Thompson
    variance ``sum((1 - p) * (y / p)^2)``) and the future itself (each user's impressions in the
    flight are a fresh draw: ``sum((1 / p) * (y - mean)^2)``, the spread between users' counts).
    """
    rate_of = {uid: rate for uid, (_, rate) in rates.first.items() if uid in reached}
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
    tally: Tally,
    by_day: list[tuple[float, float]],
    plan: Sequence[DayPlan],
    rates: Rates,
    reached: set[str],
    rate: float | None,
    spend: SpendSource,
) -> dict[str, Any]:
    cap = None
    if proposal.budget_total is not None and proposal.bid_cpm > 0:
        left = max(0.0, proposal.budget_total - spend.spend(proposal.id))
        cap = left / proposal.bid_cpm * 1000.0
    low, high = _interval(tally, rates, reached, cap)
    rate_of = rates.last
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
        "replayed_requests": rates.rows,
        "replayed_users": len(rate_of),
        "reached_users": len(reached),
        "replay_processes": tally.processes,
    }
