"""Flights, dayparting (in the campaign's time zone), budgets and pacing, one rule at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adtarget.decision.eligibility import (
    DictSpend,
    ZeroSpend,
    budget_reason,
    eligibility_reason,
    in_daypart,
    in_flight,
    parse_dayparting,
)
from adtarget.decision.models import LiveLineItem
from adtarget.errors import InvalidValue

from .strategies import line_item

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T_END = T0 + timedelta(days=10)


def _item(**kw: object) -> LiveLineItem:
    base = {"campaign_start": T0, "campaign_end": T_END, "campaign_budget_total": 1000.0}
    base.update(kw)
    return line_item(1, None, **base)


def test_flight_bounds_campaign_and_line_item() -> None:
    item = _item(start=T0 + timedelta(days=2), end=T0 + timedelta(days=5))
    assert not in_flight(item, T0 - timedelta(seconds=1))
    assert not in_flight(item, T0 + timedelta(days=1))
    assert in_flight(item, T0 + timedelta(days=2))
    assert not in_flight(item, T0 + timedelta(days=5))
    open_item = _item()
    assert in_flight(open_item, T0)
    assert not in_flight(open_item, T_END)
    reason = eligibility_reason(item, ZeroSpend(), T0 + timedelta(days=6))
    assert reason is not None and reason[0] == "flight"


def test_dayparting_uses_campaign_time_zone() -> None:
    hours = parse_dayparting({"mon": [9, 10], "Saturday": [0]})
    assert hours == frozenset({9, 10, 5 * 24})
    item = _item(dayparting=hours, timezone="America/New_York")
    # 2026-01-05 is a Monday; 14:30 UTC = 09:30 in New York (EST, UTC-5)
    assert in_daypart(item, datetime(2026, 1, 5, 14, 30, tzinfo=UTC))
    assert not in_daypart(item, datetime(2026, 1, 5, 9, 30, tzinfo=UTC))
    # Saturday 00:xx in New York is Saturday 05:xx UTC
    assert in_daypart(item, datetime(2026, 1, 10, 5, 10, tzinfo=UTC))
    assert not in_daypart(item, datetime(2026, 1, 10, 0, 10, tzinfo=UTC))
    r = eligibility_reason(item, ZeroSpend(), datetime(2026, 1, 6, 14, tzinfo=UTC))
    assert r is not None and r[0] == "daypart"
    assert in_daypart(_item(), T0)


def test_dayparting_rejects_bad_keys_and_hours() -> None:
    with pytest.raises(InvalidValue) as e:
        parse_dayparting({"funday": [1]})
    assert e.value.field == "dayparting.funday"
    with pytest.raises(InvalidValue):
        parse_dayparting({"mon": [24]})
    assert parse_dayparting(None) is None and parse_dayparting({}) is None
    assert parse_dayparting({"all": [0]}) == frozenset(d * 24 for d in range(7))


def test_budget_spent_blocks_line_item_and_campaign() -> None:
    now = T0 + timedelta(days=9)
    item = _item(budget_total=100.0, pacing_mode="asap")
    assert budget_reason(item, DictSpend({1: 99.0}, {101: 500.0}), now) is None
    r = budget_reason(item, DictSpend({1: 100.0}), now)
    assert r is not None and r[0] == "budget" and "line item" in r[1]
    r = budget_reason(item, DictSpend({}, {101: 1000.0}), now)
    assert r is not None and r[0] == "budget" and "campaign" in r[1]


def test_daily_budget() -> None:
    item = _item(campaign_budget_daily=50.0, pacing_mode="asap")
    now = T0 + timedelta(days=3, hours=23)
    assert budget_reason(item, DictSpend(campaigns_today={101: 49.0}), now) is None
    r = budget_reason(item, DictSpend(campaigns_today={101: 50.0}), now)
    assert r is not None and r[0] == "budget" and "daily" in r[1]


def test_even_pacing_blocks_spending_ahead_and_asap_does_not() -> None:
    even = _item()
    asap = _item(campaign_pacing_mode="asap")
    day3 = T0 + timedelta(days=3)  # 30% of the flight: pace allows ~1000 * (0.3*1.05 + 0.01)
    spend_ok = DictSpend(campaigns={101: 300.0})
    spend_ahead = DictSpend(campaigns={101: 400.0})
    assert budget_reason(even, spend_ok, day3) is None
    r = budget_reason(even, spend_ahead, day3)
    assert r is not None and r[0] == "pacing"
    assert budget_reason(asap, spend_ahead, day3) is None
    # each budget follows its own owner's mode: an asap line item does not unpace its campaign
    assert budget_reason(_item(pacing_mode="asap"), spend_ahead, day3) == r
    li_even = _item(campaign_budget_total=None, budget_total=1000.0)
    assert budget_reason(li_even, DictSpend({1: 400.0}), day3) is not None
    li_asap = _item(campaign_budget_total=None, budget_total=1000.0, pacing_mode="asap")
    assert budget_reason(li_asap, DictSpend({1: 400.0}), day3) is None
    # a fresh flight is not blocked by its first impressions
    assert budget_reason(even, DictSpend(campaigns={101: 5.0}), T0) is None
    # later in the flight the same spend is within pace
    assert budget_reason(even, spend_ahead, T0 + timedelta(days=5)) is None


def test_daily_even_pacing_follows_local_day() -> None:
    item = _item(campaign_budget_daily=240.0, timezone="Asia/Tokyo")
    # 03:00 UTC = 12:00 in Tokyo: half the day, pace allows ~240 * (0.5*1.05 + 0.01) = 128.4
    noon_tokyo = datetime(2026, 1, 3, 3, 0, tzinfo=UTC)
    assert budget_reason(item, DictSpend(campaigns_today={101: 120.0}), noon_tokyo) is None
    r = budget_reason(item, DictSpend(campaigns_today={101: 140.0}), noon_tokyo)
    assert r is not None and r[0] == "pacing" and "daily" in r[1]
