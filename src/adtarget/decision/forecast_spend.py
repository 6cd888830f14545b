"""The replay's stand-in for delivered spend.

Why stand-ins and not the serving stores: a forecast must not touch real counters or spend, yet
the engine must see the replay's own impressions (a capped user stays capped, a budget runs
out). ``ReplaySpend`` is the delivered spend so far plus the replay's, already scaled to the
population; the replay's counters are a fresh ``MemoryCounters``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from itertools import accumulate
from typing import Any, cast

from adtarget.decision.eligibility import SpendSource, budget_reason, has_budget, zone
from adtarget.decision.models import LiveLineItem

LINE_ITEM, CAMPAIGN, DAY = 0, 1, 2
"""What a spend read or charge is counted on: a line item, a campaign, a campaign's local day."""
Key = tuple[int, Any]
"""``(LINE_ITEM, id)``, ``(CAMPAIGN, id)`` or ``(DAY, (campaign id, local date))``."""
Read = tuple[float, Key, float]
"""A spend as the engine read it: ``(ts, key, spend)``."""
Charge = tuple[float, int, int, date, float]
"""A replayed impression's cost: ``(ts, line_item_id, campaign_id, local date, cost)``."""


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
        local = self._add(line_item_id, campaign_id, cost, when)
        if self.record:
            self.charges.append((when.timestamp(), line_item_id, campaign_id, local, cost))

    def _add(self, line_item_id: int, campaign_id: int, cost: float, when: datetime) -> date:
        self.line_items[line_item_id] = self.line_items.get(line_item_id, 0.0) + cost
        self.campaigns[campaign_id] = self.campaigns.get(campaign_id, 0.0) + cost
        local = when.astimezone(zone(self.timezones.get(campaign_id, "UTC"))).date()
        key = (campaign_id, local)
        self.daily[key] = self.daily.get(key, 0.0) + cost
        return local

    def spend(self, line_item_id: int) -> float:
        """Delivered plus replayed spend of a line item."""
        base = self._base_items.get(line_item_id)
        if base is None:
            base = self._base_items[line_item_id] = self.base.spend(line_item_id)
        got = base + self.line_items.get(line_item_id, 0.0)
        if self.record:
            self.reads.append((self.now, (LINE_ITEM, line_item_id), got))
        return got

    def campaign_spend(self, campaign_id: int) -> float:
        """Delivered plus replayed spend of a campaign."""
        base = self._base_campaigns.get(campaign_id)
        if base is None:
            base = self._base_campaigns[campaign_id] = self.base.campaign_spend(campaign_id)
        got = base + self.campaigns.get(campaign_id, 0.0)
        if self.record:
            self.reads.append((self.now, (CAMPAIGN, campaign_id), got))
        return got

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
        if self.record:
            self.reads.append((now.timestamp(), (DAY, (campaign_id, local)), got))
        return got


class FixedSpend:
    """Delivered spend read once in the asking process, for forked replay parts (the delivery
    log's source may reload in a thread, or hold connections, neither of which forks)."""

    def __init__(
        self,
        line_items: Mapping[int, float],
        campaigns: Mapping[int, float],
        today: Mapping[int, float],
    ) -> None:
        self.line_items = dict(line_items)
        self.campaigns = dict(campaigns)
        self.today = dict(today)

    @classmethod
    def read(cls, base: SpendSource, items: Iterable[LiveLineItem], now: datetime) -> FixedSpend:
        """What ``base`` says of ``items`` (the budgeted ones) and their campaigns, now."""
        items = list(items)
        camps = {it.campaign_id: it.timezone for it in items}
        return cls(
            {it.id: base.spend(it.id) for it in items},
            {c: base.campaign_spend(c) for c in camps},
            {c: base.campaign_spend_today(c, tz, now) for c, tz in camps.items()},
        )

    def spend(self, line_item_id: int) -> float:
        """The line item's delivered spend."""
        return self.line_items[line_item_id]

    def campaign_spend(self, campaign_id: int) -> float:
        """The campaign's delivered spend."""
        return self.campaigns[campaign_id]

    def campaign_spend_today(
        self, campaign_id: int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        """The campaign's delivered spend today (``ReplaySpend`` asks only for today)."""
        return self.today[campaign_id]


def parts_agree(
    items: Sequence[LiveLineItem], parts: Sequence[tuple[Sequence[Read], Sequence[Charge]]]
) -> bool:
    """Whether replay parts run apart (disjoint users, each seeing only its own spend) decided
    every budget check as one replay of all of them would.

    Why this is enough: a part's budget check read its own spend (of the line item, its
    campaign, the campaign's local day); the whole replay's at that moment is that plus what
    the other parts charged to the same thing before it (counted up to and including the same
    second: an upper bound). Each of a check's limits (a total, a daily budget, an even pace)
    only fails more as spend grows, so a read that failed a limit in its part fails it in the
    whole too, and one that passed passes in the whole if it passes at the upper bound. If no
    read changes sides on any limit, every check and so every decision is the same, and the
    parts' answers are the whole replay's.
    """
    of_item = {it.id: it for it in items if has_budget(it)}
    of_campaign = {it.campaign_id: it for it in of_item.values()}
    times: list[dict[Key, list[float]]] = []
    sums: list[dict[Key, list[float]]] = []
    for _, charges in parts:
        by_key: dict[Key, list[tuple[float, float]]] = {}
        for ts, li, campaign, local, cost in charges:
            for key in ((LINE_ITEM, li), (CAMPAIGN, campaign), (DAY, (campaign, local))):
                by_key.setdefault(key, []).append((ts, cost))
        times.append({k: [t for t, _ in ev] for k, ev in by_key.items()})
        sums.append({k: list(accumulate(c for _, c in ev)) for k, ev in by_key.items()})
    for p, (reads, _) in enumerate(parts):
        of_key: dict[Key, list[tuple[float, float]]] = {}
        for ts, key, got in reads:  # each key's reads, in time order (the replay's clock)
            of_key.setdefault(key, []).append((ts, got))
        for key, seen in of_key.items():
            others = [
                (times[q][key], sums[q][key])
                for q in range(len(parts))
                if q != p and key in times[q]
            ]
            if not others:
                continue
            kind, which = key[0], cast(Any, key[1])
            item = (
                of_item[which]
                if kind == LINE_ITEM
                else of_campaign[which[0] if kind == DAY else which]
            )
            if not _key_agrees(item, kind, seen, others):
                return False
    return True


AGREE_BLOCK = 32
"""Reads of one key checked at once against their highest total (``_key_agrees``)."""


def _key_agrees(
    item: LiveLineItem,
    kind: int,
    seen: Sequence[tuple[float, float]],
    others: Sequence[tuple[list[float], list[float]]],
) -> bool:
    """Whether no read of one key in ``seen`` (time order) passes alone and fails with what
    the ``others`` parts charged the key up to its second.

    Why in blocks: a line item's or campaign's total limits only grow with time (an even
    pace's fraction of the flight), so if a block's highest total passes at the block's first
    moment, every read in it passes (the usual case: one check per block, not two per read;
    they were 7% of a split forecast). A campaign's local day is read one by one (its pace
    restarts each day, and a clock change can step it back)."""
    totals = []
    for ts, got in seen:
        more = 0.0
        for at, cum in others:
            n = bisect_right(at, ts)
            more += cum[n - 1] if n else 0.0
        totals.append((ts, got, more))
    block = AGREE_BLOCK if kind != DAY else 1
    for lo in range(0, len(totals), block):
        chunk = totals[lo : lo + block]
        if len(chunk) > 1:
            highest = max(got + more for _, got, more in chunk)
            if _passes(item, kind, highest, chunk[0][0]):
                continue
        for ts, got, more in chunk:
            flips = more > 0.0 and not _passes(item, kind, got + more, ts)
            if flips and _passes(item, kind, got, ts):
                return False
    return True


def _passes(item: LiveLineItem, kind: int, spent: float, ts: float) -> bool:
    """Whether ``spent`` on this kind of the item's budgets passes its limits at ``ts``."""
    return budget_reason(item, _One(kind, spent), datetime.fromtimestamp(ts, UTC)) is None


class _One:
    """One spend read, the others below every limit: ``budget_reason`` then fails only if
    this read's own limits do (the others of a real check fail alike in part and whole)."""

    def __init__(self, kind: int, value: float) -> None:
        self.kind = kind
        self.value = value

    def _of(self, kind: int) -> float:
        return self.value if kind == self.kind else -math.inf

    def spend(self, line_item_id: int) -> float:
        return self._of(LINE_ITEM)

    def campaign_spend(self, campaign_id: int) -> float:
        return self._of(CAMPAIGN)

    def campaign_spend_today(
        self, campaign_id: int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        return self._of(DAY)
