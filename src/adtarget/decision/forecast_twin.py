"""When the replay without the proposal (the "twin") must decide a request, and when it is told.

Why: to say what the proposal takes from each competitor, the forecast replays every request
twice, with and without the proposal. The engine's answer to a request depends only on the
match, the request, and the state its walk reads: each examined candidate's frequency-cap
counters (per user) and budget spend (shared by all users). Where none of those differ between
the two replays, and the proposal is not what the replay with it served, both answers are the
same: the twin is then told what was served (``DecisionEngine.record_served``) instead of
deciding it again. Only requests the proposal was served, ad breaks it matches (a break may fill
otherwise without it), and requests whose walk reaches a candidate whose counters or spend the
two replays have made different are decided by the twin.

What differs is tracked as positions of the replay index (``Divergence``): once the two
answers to a request differ, every candidate reading a counter one of them counted (a cap with
the same level and owner), for that user, and every candidate reading a spend one of them
charged (its line item's, its campaign's), for everyone, is "diverged" from then on. Kept
forever: a conservative over-approximation, never a miss.

A budget that cannot bind in the window (``binding``: delivered spend plus everything the log
and the replay could possibly charge stays below its lowest limit, even pace included) passes
every check in both replays whatever the spend, so its spend is not tracked and it does not
couple users.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from adtarget.decision.eligibility import PACING_HEADROOM, SpendSource, has_budget
from adtarget.decision.forecast_walks import examined
from adtarget.decision.models import LiveLineItem
from adtarget.decision.pods import replayed_pod

Picks = list[tuple[LiveLineItem, int]]


class Divergence:
    """Which candidates' state differs between the replays with and without the proposal.

    Args:
        items: the replay index's items (with the proposal), in position order.
        proposal_id: the proposal's id (its own state is read only by the replay with it).
        binding: ids of the line items whose budget can bind (their spend is tracked).
        full: the twin decides every request (tests compare it with the default).
    """

    def __init__(
        self,
        items: Sequence[LiveLineItem],
        proposal_id: int,
        binding: frozenset[int],
        full: bool = False,
    ) -> None:
        self.position_of = {it.id: p for p, it in enumerate(items)}
        self.full = full
        self._caps: dict[tuple[str, int], int] = {}
        self._items: dict[int, int] = {}
        self._campaigns: dict[int, int] = {}
        for p, it in enumerate(items):
            if it.id == proposal_id:
                continue
            bit = 1 << p
            for c in it.caps:
                key = (c.level, c.owner_id)
                self._caps[key] = self._caps.get(key, 0) | bit
            if it.id in binding:
                if it.budget_total is not None:
                    self._items[it.id] = bit
                if it.campaign_budget_total is not None or it.campaign_budget_daily is not None:
                    self._campaigns[it.campaign_id] = self._campaigns.get(it.campaign_id, 0) | bit
        self.of_user: dict[str, int] = {}
        """Per user, the positions whose frequency-cap counters differ."""
        self.spent = 0
        """The positions whose budget spend differs (for every user)."""

    def same(self, user_id: str, matched: int, picks: Picks, limit: int, pod: bool) -> bool:
        """Whether the twin, asked this request, would answer ``picks`` (the answer with the
        proposal, which was not among them): no candidate its walk examined reads a state
        that differs. ``matched``: the replay index's match bits; the walk of a plain request
        examines the candidates up to its last pick when it filled ``limit``, all of them
        otherwise (and in an ad break, whose fill rules stop it elsewhere)."""
        if self.full:
            return False
        diverged = self.of_user.get(user_id, 0) | self.spent
        if not diverged:
            return True
        if not pod:
            matched = examined(matched, picks, limit, self.position_of)
        return not matched & diverged

    def parted(self, user_id: str, with_it: Picks, without: Picks) -> None:
        """Both replays decided a request: what differs between their answers diverges (an
        answer lists a line item at most once, in rank order)."""
        if len(with_it) == len(without) and all(
            a[0] is b[0] for a, b in zip(with_it, without, strict=True)
        ):
            return
        differ = {it.id for it, _ in with_it} ^ {it.id for it, _ in without}
        mine = self.of_user.get(user_id, 0)
        for it, _ in (*with_it, *without):
            if it.id in differ and (it.caps or has_budget(it)):
                for c in it.caps:
                    mine |= self._caps.get((c.level, c.owner_id), 0)
                if has_budget(it):
                    self.spent |= self._items.get(it.id, 0) | self._campaigns.get(it.campaign_id, 0)
        if mine:
            self.of_user[user_id] = mine


def binding(
    competitors: Iterable[LiveLineItem],
    table: pa.Table,
    spend: SpendSource,
    now: datetime,
    proposal: LiveLineItem,
) -> frozenset[int]:
    """The budgeted competitors whose budget may bind in a replay of ``table`` (every row of
    the window; the replay's rows are among them).

    An upper bound of what a check can read, per budget: delivered spend (today's, for a daily
    budget), plus what the log shows served for it in the window (the replay charges that for
    users it leaves out), plus every slot of every row at the highest bid that spends on it
    (a line item's own bid; for a campaign, the highest of its line items and the proposal, if
    it joins the campaign), all scaled by ``1 / sample_rate``. If that stays below the lowest
    limit the check has (the budget; with even pacing, the pace's floor ``PACING_HEADROOM``
    times it), no check can fail, in either replay.
    """
    budgeted = [it for it in competitors if has_budget(it)]
    if not budgeted:
        return frozenset()
    slots = _weighted_slots(table)
    logged_items, logged_campaigns = _logged_spend(table, budgeted)
    top_bid: dict[int, float] = {}
    for it in (*budgeted, proposal):
        top_bid[it.campaign_id] = max(top_bid.get(it.campaign_id, 0.0), it.bid_cpm)
    out: set[int] = set()
    for it in budgeted:
        floor = PACING_HEADROOM if it.pacing_mode == "even" else 1.0
        camp_floor = PACING_HEADROOM if it.campaign_pacing_mode == "even" else 1.0
        replayed = slots * it.bid_cpm / 1000.0
        camp_replayed = slots * top_bid[it.campaign_id] / 1000.0
        camp_logged = logged_campaigns.get(it.campaign_id, 0.0)
        checks: list[tuple[float, float]] = []  # (most it can read, least its limit can be)
        if it.budget_total is not None:
            most = spend.spend(it.id) + logged_items.get(it.id, 0.0) + replayed
            checks.append((most, it.budget_total * floor))
        if it.campaign_budget_total is not None:
            most = spend.campaign_spend(it.campaign_id) + camp_logged + camp_replayed
            checks.append((most, it.campaign_budget_total * camp_floor))
        if it.campaign_budget_daily is not None:
            today = spend.campaign_spend_today(it.campaign_id, it.timezone, now)
            checks.append(
                (today + camp_logged + camp_replayed, it.campaign_budget_daily * camp_floor)
            )
        if any(most >= least for most, least in checks):
            out.add(it.id)
    return frozenset(out)


def _weighted_slots(table: pa.Table) -> float:
    """Every ad slot the rows ask, scaled by ``1 / sample_rate`` (a break: its slots)."""
    weight = pc.divide(1.0, table.column("sample_rate"))
    limit = pc.max_element_wise(pc.cast(table.column("limit"), pa.float64()), 0.0)
    pods = table.column("pod")
    if pods.null_count < len(pods):
        texts = [t for t in pc.unique(pods).to_pylist() if t is not None]
        specs = [(t, spec) for t in texts if (spec := replayed_pod(t)) is not None]
        slots = pa.array([float(spec.slots) for _, spec in specs], pa.float64())
        at = pc.index_in(pods, pa.array([t for t, _ in specs], pa.string()))
        limit = pc.if_else(pc.is_null(at), limit, pc.take(slots, at))
    return float(pc.sum(pc.multiply(weight, limit)).as_py() or 0.0)


def _logged_spend(
    table: pa.Table, budgeted: Sequence[LiveLineItem]
) -> tuple[dict[int, float], dict[int, float]]:
    """What the log shows served for each budgeted line item and its campaign in the window
    (at its bid, scaled by ``1 / sample_rate``)."""
    served = table.column("served").combine_chunks()
    items = pc.list_flatten(served)
    if len(items) == 0:
        return {}, {}
    of = {it.id: it for it in budgeted}
    keep = pc.is_in(items, pa.array(sorted(of), pa.int64()))
    rows = pc.list_parent_indices(served).filter(keep)
    weights = pc.divide(1.0, pc.take(table.column("sample_rate"), rows))
    grouped = (
        pa.table({"li": items.filter(keep), "w": weights}).group_by("li").aggregate([("w", "sum")])
    )
    by_item: dict[int, float] = {}
    by_campaign: dict[int, float] = {}
    for li, w in zip(
        grouped.column("li").to_pylist(), grouped.column("w_sum").to_pylist(), strict=True
    ):
        it = of[li]
        cost = w * it.bid_cpm / 1000.0
        by_item[li] = cost
        by_campaign[it.campaign_id] = by_campaign.get(it.campaign_id, 0.0) + cost
    return by_item, by_campaign
