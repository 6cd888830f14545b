"""The replay's stand-in for delivered spend.

Why stand-ins and not the serving stores: a forecast must not touch real counters or spend, yet
the engine must see the replay's own impressions (a capped user stays capped, a budget runs
out). ``ReplaySpend`` is the delivered spend so far plus the replay's, already scaled to the
population; the replay's counters are a fresh ``MemoryCounters``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

from adtarget.decision.eligibility import SpendSource, zone


class ReplaySpend:
    """Delivered spend plus the replay's (``charge``), per line item, campaign and local day.

    Args:
        base: delivered spend so far (the engine's own source).
        today: the real current day: the base's "today" spend counts only on that day.
        timezones: each campaign's time zone (for its daily budget's day).
    """

    def __init__(self, base: SpendSource, *, today: date, timezones: Mapping[int, str]) -> None:
        self.base = base
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
        events, i = self.outside, self._next
        while i < len(events) and events[i][0] <= ts:
            when, li, campaign, cost = events[i]
            self.charge(li, campaign, cost, datetime.fromtimestamp(when, UTC))
            i += 1
        self._next = i

    def charge(self, line_item_id: int, campaign_id: int, cost: float, when: datetime) -> None:
        """Add one replayed impression's cost (already scaled by ``1 / sample_rate``)."""
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
        return base + self.line_items.get(line_item_id, 0.0)

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
