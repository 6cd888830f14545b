"""Which logged day stands in for each day of a flight, and the requests that replay on it.

Why whole days, one per flight day: the replay runs every request of a sampled user through the
real frequency caps, so a flight day must be fed one real day of those users' requests, not an
average of several (an average has fractional requests and no caps). The day chosen is a logged
day of the same weekday (day-of-week shape), the most recent first and the older ones in turn for
later weeks of a long flight; when the history has no day of that weekday, the nearest logged
day stands in and ``same_weekday`` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from adtarget.decision.request_store import SCHEMA, RequestStore

COLUMNS = ("ts", "user_id", "context", "formats", "limit", "sample_rate", "pod")


@dataclass(frozen=True, slots=True)
class DayPlan:
    """One flight day, the logged day replayed on it, and whether it is the same weekday."""

    flight_day: date
    history_day: date
    same_weekday: bool


class Replayed(NamedTuple):
    """One logged request moved onto its flight day (``ts`` already shifted).

    A named tuple, not a frozen dataclass: tens of thousands are made per forecast, and a
    frozen dataclass's ``__init__`` (``object.__setattr__`` per field) cost ~7% of one."""

    ts: float
    user_id: str
    context: str
    formats: tuple[str, ...] | None
    limit: int
    sample_rate: float
    day: int
    """Index of the flight day in the plan."""
    pod: str | None = None
    """The ad break asked (JSON text), replayed as one (``decision/pods.py``)."""


def flight_days(start: datetime, end: datetime) -> list[date]:
    """The UTC days a flight ``[start, end)`` touches."""
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def plan_days(start: datetime, end: datetime, history: Sequence[date]) -> list[DayPlan]:
    """A logged day for every flight day (``history`` must not be empty)."""
    by_weekday: dict[int, list[date]] = {}
    for day in sorted(history, reverse=True):
        by_weekday.setdefault(day.weekday(), []).append(day)
    out: list[DayPlan] = []
    for i, day in enumerate(flight_days(start, end)):
        same = by_weekday.get(day.weekday())
        if same:
            out.append(DayPlan(day, same[(i // 7) % len(same)], True))
        else:
            nearest = min(history, key=lambda h: (abs((h - day).days), h))
            out.append(DayPlan(day, nearest, False))
    return out


def replay_table(
    store: RequestStore, plan: Sequence[DayPlan], start: datetime, end: datetime
) -> pa.Table:
    """Every logged request of the planned days, moved onto its flight day, inside the flight,
    with the flight day's index in ``day`` (vectorized: no Python per row).

    Not sorted: most rows are only grouped and filtered (reach, competitors), and sorting a
    million rows with their list columns was 12% of a forecast; ``rows_of`` sorts the rows
    that are replayed."""
    lo, hi = start.timestamp(), end.timestamp()
    cache: dict[date, pa.Table] = {}
    parts: list[pa.Table] = []
    for i, p in enumerate(plan):
        table = cache.get(p.history_day)
        if table is None:
            table = cache[p.history_day] = store.read_day(p.history_day).select(
                [*COLUMNS, "served"]
            )
        shift = (
            datetime.combine(p.flight_day, time(), UTC)
            - datetime.combine(p.history_day, time(), UTC)
        ).total_seconds()
        ts = pc.add(table.column("ts"), shift)
        moved = table.set_column(0, "ts", ts)
        bounds = pc.min_max(ts).as_py()
        if bounds["min"] is not None and not lo <= bounds["min"] <= bounds["max"] < hi:
            # only a flight's first and last days are cut: filtering whole days copied every
            # column of every row (~6% of a forecast)
            moved = moved.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
        day = pa.array(np.full(moved.num_rows, i, np.int32))
        parts.append(moved.append_column("day", day))
    if not parts:
        names = (*COLUMNS, "served")
        return pa.table({name: pa.array([], SCHEMA.field(name).type) for name in names})
    return pa.concat_tables(parts)


def rows_of(table: pa.Table) -> list[Replayed]:
    """``Replayed`` rows of ``table`` in time order (only the rows that will be replayed).

    Made by ``tuple.__new__`` over zipped columns (C loops): the named tuple's own ``__new__``
    is Python and cost more than half of this step."""
    table = table.select([*COLUMNS, "day"]).sort_by("ts")
    ts, uid, ctx, fmts, limit, rate, pod, day = (
        table.column(name).to_pylist() for name in (*COLUMNS, "day")
    )
    formats = [tuple(f) if f is not None else None for f in fmts]
    make = tuple.__new__
    rows = zip(ts, uid, ctx, formats, limit, rate, day, pod, strict=True)
    return [make(Replayed, row) for row in rows]


class Rates(NamedTuple):
    """What a forecast's answer needs of its replayed rows: per user, the time and sample rate
    of their first replayed request (users in that order) and the rate of their last, and
    how many rows were replayed (``rates_of``; parts of a replay split by user add up with
    ``merge_rates``)."""

    first: dict[str, tuple[float, float]]
    last: dict[str, float]
    rows: int


def rates_of(rows: Sequence[Replayed]) -> Rates:
    """``Rates`` of ``rows`` (in time order)."""
    first: dict[str, tuple[float, float]] = {}
    last: dict[str, float] = {}
    for r in rows:
        if r.user_id not in first:
            first[r.user_id] = (r.ts, r.sample_rate)
        last[r.user_id] = r.sample_rate
    return Rates(first, last, len(rows))


def merge_rates(parts: Sequence[Rates]) -> Rates:
    """The ``Rates`` of parts holding disjoint users, as of their rows replayed together:
    users ordered by their first request's time, as one time-ordered replay meets them."""
    firsts = sorted(
        ((ts, uid, rate) for part in parts for uid, (ts, rate) in part.first.items()),
        key=lambda first: first[0],
    )
    last: dict[str, float] = {}
    for part in parts:
        last.update(part.last)
    return Rates(
        {uid: (ts, rate) for ts, uid, rate in firsts},
        {uid: last[uid] for _, uid, _ in firsts},
        sum(part.rows for part in parts),
    )
