"""A small synthetic world for the forecast proof tests: users, their request habits, line items.

Traffic is drawn from one fixed distribution (each user's daily request rate, weekend lift,
context mix), so a "future" drawn from it is what the logged history predicts. Everything runs
through the real ``DecisionEngine``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from adtarget.decision.counters import MemoryCounters
from adtarget.decision.eligibility import DictSpend
from adtarget.decision.engine import DecisionEngine, StaticIndex
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import DecisionRequest, FrequencyCap, LiveLineItem
from adtarget.decision.profiles import MemoryProfileStore
from adtarget.decision.request_log import RequestLog
from adtarget.rules.parse import parse

FAR_PAST = datetime(2020, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2040, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    profiles: dict[str, dict[str, object]]
    rates: dict[str, float]
    tv_share: dict[str, float]


def make_world(users: int = 500, seed: int = 7) -> World:
    rnd = random.Random(seed)
    profiles: dict[str, dict[str, object]] = {}
    rates: dict[str, float] = {}
    tv: dict[str, float] = {}
    for i in range(users):
        uid = f"u{i}"
        profiles[uid] = {
            "country": rnd.choices(["US", "CA", "GB"], [5, 2, 3])[0],
            "age": rnd.randint(18, 65),
        }
        rates[uid] = rnd.gammavariate(2.0, 3.0)  # mean 6 requests a day, heavy users exist
        tv[uid] = rnd.random()
    return World(profiles, rates, tv)


def traffic(world: World, days: Sequence[date], seed: int) -> Iterator[DecisionRequest | datetime]:
    """Requests in time order, each preceded by its time (``datetime``, then the request)."""
    rnd = random.Random(seed)
    for day in days:
        lift = 1.4 if day.weekday() >= 5 else 1.0
        events: list[tuple[float, str, str]] = []
        base = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        for uid, rate in world.rates.items():
            n = _poisson(rnd, rate * lift)
            for _ in range(n):
                device = "tv" if rnd.random() < world.tv_share[uid] else "mobile"
                events.append((base + rnd.random() * 86_400, uid, device))
        events.sort()
        for ts, uid, device in events:
            yield datetime.fromtimestamp(ts, UTC)
            yield DecisionRequest(uid, {"device": device}, 1, None)


def _poisson(rnd: random.Random, lam: float) -> int:
    # Knuth; lam is small
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rnd.random()
        if p <= limit:
            return k
        k += 1


def item(
    li_id: int,
    rule: str,
    *,
    priority: int,
    bid: float,
    cap: int | None = None,
    budget: float | None = None,
    pacing: str = "even",
    daily: float | None = None,
    start: datetime = FAR_PAST,
    end: datetime = FAR_FUTURE,
) -> LiveLineItem:
    return LiveLineItem(
        id=li_id,
        campaign_id=100 + li_id,
        advertiser_id=1,
        priority=priority,
        bid_cpm=bid,
        rule=parse(rule) if rule else None,
        creatives={"video": (1000 + li_id,)},
        caps=(FrequencyCap("line_item", li_id, cap, 86_400),) if cap else (),
        start=start,
        end=end,
        budget_total=budget,
        pacing_mode="asap" if pacing == "asap" else "even",
        campaign_budget_daily=daily,
        campaign_pacing_mode="asap" if pacing == "asap" else "even",
    )


class SpendLedger(DictSpend):
    """Delivered spend, charged as the engine serves (what the delivery log would report)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_day: dict[tuple[int, date], float] = {}

    def charge(self, li: LiveLineItem, when: datetime) -> None:
        cost = li.bid_cpm / 1000
        self.line_items[li.id] = self.line_items.get(li.id, 0.0) + cost
        self.campaigns[li.campaign_id] = self.campaigns.get(li.campaign_id, 0.0) + cost
        key = (li.campaign_id, when.date())
        self.by_day[key] = self.by_day.get(key, 0.0) + cost

    def campaign_spend_today(
        self, campaign_id: int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        return self.by_day.get((campaign_id, (now or FAR_PAST).astimezone(UTC).date()), 0.0)


def serve(
    world: World,
    items: Sequence[LiveLineItem],
    days: Sequence[date],
    seed: int,
    *,
    log: RequestLog | None = None,
) -> dict[int, int]:
    """Serve every request of ``days`` with the real engine; impressions per line item."""
    by_id = {it.id: it for it in items}
    spend = SpendLedger()
    engine = DecisionEngine(
        index_holder=StaticIndex(LineItemIndex(list(items))),
        profiles=MemoryProfileStore(world.profiles),
        counters=MemoryCounters(),
        spend=spend,
    )
    served: dict[int, int] = {}
    when = FAR_PAST
    for x in traffic(world, days, seed):
        if isinstance(x, datetime):
            when = x
            continue
        result = engine.decide(x, now=when)
        for d in result.decisions:
            served[d.line_item_id] = served.get(d.line_item_id, 0) + 1
            spend.charge(by_id[d.line_item_id], when)
        if log is not None:
            log.record(x, result, ts=when.timestamp())
    return served


def days_from(first: date, n: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]
