"""Whether a targeted line item may serve *now*: flights, dayparting, budgets and pacing.

Why separate from the engine: each rule is a pure function of the item, the time and the spend
so far — tested one by one, and reused by ``explain`` to name the first reason an item lost.
Frequency caps need per-user counters and live in the engine.

Pacing ("even"): by a fraction f of the flight, spend may be at most
``budget * (f * (1 + PACING_TOLERANCE) + PACING_HEADROOM)`` — don't spend tomorrow's budget
today, with a small head start so a fresh flight is not blocked by its first impressions. A
daily budget is paced the same way over the day in the campaign's time zone. "asap" skips pacing
but never the budgets themselves; the line item's mode paces its own budget, the campaign's mode
the campaign's budgets.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adtarget.decision.models import LiveLineItem
from adtarget.errors import InvalidValue

PACING_TOLERANCE = 0.05
PACING_HEADROOM = 0.01

_DAYS = {
    "mon": 0,
    "monday": 0,
    "tue": 1,
    "tuesday": 1,
    "wed": 2,
    "wednesday": 2,
    "thu": 3,
    "thursday": 3,
    "fri": 4,
    "friday": 4,
    "sat": 5,
    "saturday": 5,
    "sun": 6,
    "sunday": 6,
}


class SpendSource(Protocol):
    """Delivered spend so far (``adtarget.delivery.service.DeliverySpend`` implements it)."""

    def spend(self, line_item_id: int) -> float:
        """All-time spend of a line item."""
        ...

    def campaign_spend(self, campaign_id: int) -> float:
        """All-time spend of a campaign."""
        ...

    def campaign_spend_today(
        self, campaign_id: int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        """Spend of a campaign since local midnight in ``tz``."""
        ...


class ZeroSpend:
    """Nothing delivered yet (tests, a fresh install without events)."""

    def spend(self, line_item_id: int) -> float:
        """Always 0."""
        return 0.0

    def campaign_spend(self, campaign_id: int) -> float:
        """Always 0."""
        return 0.0

    def campaign_spend_today(
        self, campaign_id: int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        """Always 0."""
        return 0.0


class DictSpend:
    """Spend from plain dicts (tests and benchmarks)."""

    def __init__(
        self,
        line_items: Mapping[int, float] | None = None,
        campaigns: Mapping[int, float] | None = None,
        campaigns_today: Mapping[int, float] | None = None,
    ) -> None:
        self.line_items = dict(line_items or {})
        self.campaigns = dict(campaigns or {})
        self.campaigns_today = dict(campaigns_today or {})

    def spend(self, line_item_id: int) -> float:
        """Spend of a line item (0 when unknown)."""
        return self.line_items.get(line_item_id, 0.0)

    def campaign_spend(self, campaign_id: int) -> float:
        """Spend of a campaign (0 when unknown)."""
        return self.campaigns.get(campaign_id, 0.0)

    def campaign_spend_today(
        self, campaign_id: int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        """Today's spend of a campaign (0 when unknown)."""
        return self.campaigns_today.get(campaign_id, 0.0)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """A cached ``ZoneInfo`` (unknown names fall back to UTC; the catalog validates them)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_dayparting(schedule: Mapping[str, list[int]] | None) -> frozenset[int] | None:
    """Catalog dayparting (``{"mon": [9, 10, ...], "sat": [...]}``) → allowed hours of week.

    Keys are day names (``mon``/``monday``…, case-insensitive), ``0``–``6`` (Monday = 0) or
    ``all``; values are local hours 0–23. ``None``/``{}`` means no restriction.

    Raises:
        InvalidValue: for an unknown day or an hour outside 0–23 (naming the key).
    """
    if not schedule:
        return None
    hours: set[int] = set()
    for key, values in schedule.items():
        k = str(key).strip().lower()
        if k in ("all", "*", "daily"):
            days = list(range(7))
        elif k in _DAYS:
            days = [_DAYS[k]]
        elif k.isdigit() and 0 <= int(k) <= 6:
            days = [int(k)]
        else:
            raise InvalidValue(f"unknown day {key!r} in dayparting", field=f"dayparting.{key}")
        for h in values:
            if not isinstance(h, int) or isinstance(h, bool) or not 0 <= h <= 23:
                raise InvalidValue(
                    f"hour {h!r} for {key!r} is not in 0..23", field=f"dayparting.{key}"
                )
            hours.update(d * 24 + h for d in days)
    return frozenset(hours)


def in_flight(item: LiveLineItem, now: datetime) -> bool:
    """Inside the campaign's flight and the line item's own flight (start inclusive)."""
    for start, end in ((item.campaign_start, item.campaign_end), (item.start, item.end)):
        if start is not None and now < start:
            return False
        if end is not None and now >= end:
            return False
    return True


def in_daypart(item: LiveLineItem, now: datetime) -> bool:
    """Whether the local hour of week (campaign time zone) is in the schedule."""
    if item.dayparting is None:
        return True
    local = now.astimezone(zone(item.timezone))
    return local.weekday() * 24 + local.hour in item.dayparting


def _fraction(start: datetime | None, end: datetime | None, now: datetime) -> float:
    if start is None or end is None or end <= start:
        return 1.0
    return min(1.0, max(0.0, (now - start) / (end - start)))


def _paced_limit(budget: float, fraction: float) -> float:
    return budget * min(1.0, fraction * (1 + PACING_TOLERANCE) + PACING_HEADROOM)


def _day_fraction(now: datetime, tz: str) -> float:
    local = now.astimezone(zone(tz))
    return (local.hour * 3600 + local.minute * 60 + local.second) / 86400.0


def budget_reason(item: LiveLineItem, spend: SpendSource, now: datetime) -> tuple[str, str] | None:
    """``("budget", detail)`` when a budget is spent, ``("pacing", detail)`` when ahead of pace.

    Raises whatever ``spend`` raises (the engine treats that as a store failure).
    """
    checks: list[tuple[str, float, float, float, bool]] = []  # (what, budget, spent, f, even)
    if item.budget_total is not None:
        checks.append(
            (
                "line item",
                item.budget_total,
                spend.spend(item.id),
                _fraction(item.start or item.campaign_start, item.end or item.campaign_end, now),
                item.pacing_mode == "even",
            )
        )
    camp_even = item.campaign_pacing_mode == "even"
    if item.campaign_budget_total is not None:
        checks.append(
            (
                "campaign",
                item.campaign_budget_total,
                spend.campaign_spend(item.campaign_id),
                _fraction(item.campaign_start, item.campaign_end, now),
                camp_even,
            )
        )
    if item.campaign_budget_daily is not None:
        frac = _day_fraction(now, item.timezone)
        checks.append(
            (
                "campaign daily",
                item.campaign_budget_daily,
                spend.campaign_spend_today(item.campaign_id, item.timezone, now),
                frac,
                camp_even,
            )
        )
    for what, budget, spent, _frac, _even in checks:
        if spent >= budget:
            return "budget", f"{what} budget {budget:g} spent ({spent:g})"
    for what, budget, spent, frac, even in checks:
        if even and spent > (limit := _paced_limit(budget, frac)):
            return "pacing", f"{what} spend {spent:g} ahead of even pace {limit:g}"
    return None


def has_budget(item: LiveLineItem) -> bool:
    """Whether any budget applies (only then is delivered spend read)."""
    return not (
        item.budget_total is None
        and item.campaign_budget_total is None
        and item.campaign_budget_daily is None
    )


def timing_reason(item: LiveLineItem, now: datetime) -> tuple[str, str] | None:
    """``flight`` or ``daypart`` when the item may not serve at ``now`` (no store involved)."""
    if not in_flight(item, now):
        return "flight", f"now {now.isoformat()} outside the flight"
    if not in_daypart(item, now):
        local = now.astimezone(zone(item.timezone))
        return "daypart", f"{local:%a %H}h in {item.timezone} not scheduled"
    return None


def eligibility_reason(
    item: LiveLineItem, spend: SpendSource, now: datetime
) -> tuple[str, str] | None:
    """The first reason (``flight``, ``daypart``, ``budget``, ``pacing``) an item can't serve."""
    why = timing_reason(item, now)
    if why is not None or not has_budget(item):
        return why
    return budget_reason(item, spend, now)


def utc(now: datetime | None) -> datetime:
    """``now`` as an aware UTC datetime (naive is taken as UTC); current time when ``None``."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
