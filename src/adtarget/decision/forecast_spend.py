"""The replay's stand-in for delivered spend.

Why stand-ins and not the serving stores: a forecast must not touch real counters or spend, yet
the engine must see the replay's own impressions (a capped user stays capped, a budget runs
out). ``ReplaySpend`` is the delivered spend so far plus the replay's, already scaled to the
population; the replay's counters are a fresh ``MemoryCounters``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from itertools import accumulate

from adtarget.decision.eligibility import SpendSource, budget_reason, zone
from adtarget.decision.models import LiveLineItem

Read = tuple[float, int, float]
"""A line item's spend as the engine read it: ``(ts, line_item_id, spend)``."""
Charge = tuple[float, int, float]
"""A replayed impression's cost: ``(ts, line_item_id, cost)``."""


class ReplaySpend:
    """Delivered spend plus the replay's (``charge``), per line item, campaign and local day.

    Args:
        base: delivered spend so far (the engine's own source).
        today: the real current day: the base's "today" spend counts only on that day.
        timezones: each campaign's time zone (for its daily budget's day).
    """

    def __init__(
        self,
        base: SpendSource,
        *,
        today: date,
        timezones: Mapping[int, str],
        record: bool = False,
    ) -> None:
        self.base = base
        self.record = record
        self.now = 0.0
        self.reads: list[Read] = []
        """With ``record``: every ``spend`` read, at the replay's clock (``parts_agree``)."""
        self.charges: list[Charge] = []
        """With ``record``: every replayed ``charge``, in time order (``parts_agree``)."""
        self.today = today
        self.timezones = dict(timezones)
        self.line_items: dict[int, float] = {}
        self.campaigns: dict[int, float] = {}
        self.daily: dict[tuple[int, date], float] = {}
        self._base_items: dict[int, float] = {}
        self._base_campaigns: dict[int, float] = {}
        self.outside: Sequence[tuple[float, int, int, float]] = ()
        self._next = 0

    def spend_outside(self, events: Sequence[tuple[float, int, int, float]]) -> None:
        """Spend the replay does not simulate, charged as the replay's clock passes each one:
        ``(ts, line_item_id, campaign_id, cost)`` in time order (what budgeted competitors
        served, per the log, to users the replay leaves out)."""
        self.outside = events
        self._next = 0

    def advance(self, ts: float) -> None:
        """Charge every outside event up to ``ts`` (call before deciding at ``ts``)."""
        self.now = ts
        events, i = self.outside, self._next
        while i < len(events) and events[i][0] <= ts:
            when, li, campaign, cost = events[i]
            self._add(li, campaign, cost, datetime.fromtimestamp(when, UTC))
            i += 1
        self._next = i

    def charge(self, line_item_id: int, campaign_id: int, cost: float, when: datetime) -> None:
        """Add one replayed impression's cost (already scaled by ``1 / sample_rate``)."""
        if self.record:
            self.charges.append((when.timestamp(), line_item_id, cost))
        self._add(line_item_id, campaign_id, cost, when)

    def _add(self, line_item_id: int, campaign_id: int, cost: float, when: datetime) -> None:
        self.line_items[line_item_id] = self.line_items.get(line_item_id, 0.0) + cost
        self.campaigns[campaign_id] = self.campaigns.get(campaign_id, 0.0) + cost
        local = when.astimezone(zone(self.timezones.get(campaign_id, "UTC"))).date()
        key = (campaign_id, local)
        self.daily[key] = self.daily.get(key, 0.0) + cost

    def spend(self, line_item_id: int) -> float:
        """Delivered plus replayed spend of a line item."""
        base = self._base_items.get(line_item_id)
        if base is None:
            base = self._base_items[line_item_id] = self.base.spend(line_item_id)
        got = base + self.line_items.get(line_item_id, 0.0)
        if self.record:
            self.reads.append((self.now, line_item_id, got))
        return got

    def campaign_spend(self, campaign_id: int) -> float:
        """Delivered plus replayed spend of a campaign."""
        base = self._base_campaigns.get(campaign_id)
        if base is None:
            base = self._base_campaigns[campaign_id] = self.base.campaign_spend(campaign_id)
        return base + self.campaigns.get(campaign_id, 0.0)

    def campaign_spend_today(
        self, campaign_id: int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        """The replay's spend of the campaign on ``now``'s local day (plus delivered, today)."""
        if now is None:
            return self.base.campaign_spend_today(campaign_id, tz, now)
        local = now.astimezone(zone(tz)).date()
        got = self.daily.get((campaign_id, local), 0.0)
        if local == self.today:
            got += self.base.campaign_spend_today(campaign_id, tz, now)
        return got


def line_item_budgets_only(items: Iterable[LiveLineItem]) -> bool:
    """Whether no item has a campaign budget: then ``budget_reason`` of an item reads only
    ``spend(item.id)``, the one read ``parts_agree`` checks."""
    return all(
        it.campaign_budget_total is None and it.campaign_budget_daily is None for it in items
    )


class FixedSpend:
    """Base spend read once in the asking process, for forked replay parts (the delivery
    log's source may reload in a thread, or hold connections, neither of which forks)."""

    def __init__(self, spend: Mapping[int, float]) -> None:
        self.values = dict(spend)

    def spend(self, line_item_id: int) -> float:
        """The spend read for ``line_item_id``."""
        return self.values[line_item_id]

    def campaign_spend(self, campaign_id: int) -> float:
        """Never asked (``line_item_budgets_only``)."""
        raise LookupError(f"campaign {campaign_id}: no campaign budgets in a forked replay")

    def campaign_spend_today(
        self, campaign_id: int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        """Never asked (``line_item_budgets_only``)."""
        raise LookupError(f"campaign {campaign_id}: no campaign budgets in a forked replay")


def parts_agree(
    items: Mapping[int, LiveLineItem], parts: Sequence[tuple[Sequence[Read], Sequence[Charge]]]
) -> bool:
    """Whether replay parts run apart (disjoint users, each seeing only its own spend) decided
    every budget check as one replay of all of them would.

    Why this is enough: a part's budget check read its own spend; the whole replay's spend at
    that moment is that plus what the other parts charged before it (counted up to and
    including the same second: an upper bound). A budget check only fails more as spend grows,
    so a check that failed in its part fails in the whole too, and one that passed passes in
    the whole if it passes at the upper bound. If every check agrees, every decision is the
    same, so the parts' answers are the whole replay's. Needs ``line_item_budgets_only``.
    """
    times: list[dict[int, list[float]]] = []
    sums: list[dict[int, list[float]]] = []
    for _, charges in parts:
        by_item: dict[int, list[tuple[float, float]]] = {}
        for ts, li, cost in charges:
            by_item.setdefault(li, []).append((ts, cost))
        times.append({li: [t for t, _ in ev] for li, ev in by_item.items()})
        sums.append({li: list(accumulate(c for _, c in ev)) for li, ev in by_item.items()})
    for p, (reads, _) in enumerate(parts):
        for ts, li, got in reads:
            more = 0.0
            for q in range(len(parts)):
                at = times[q].get(li)
                if q != p and at:
                    n = bisect_right(at, ts)
                    more += sums[q][li][n - 1] if n else 0.0
            if more <= 0.0:
                continue
            now = datetime.fromtimestamp(ts, UTC)
            item = items[li]
            passed = budget_reason(item, _Read(got), now) is None
            if passed and budget_reason(item, _Read(got + more), now) is not None:
                return False
    return True


class _Read:
    """One line item's spend, as ``budget_reason`` reads it (``line_item_budgets_only``)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def spend(self, line_item_id: int) -> float:
        return self.value

    def campaign_spend(self, campaign_id: int) -> float:
        raise LookupError("no campaign budgets here")

    def campaign_spend_today(
        self, campaign_id: int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        raise LookupError("no campaign budgets here")
