"""What the forecast window's log says about users and budgets, beside the replay itself.

Why its own module: the forecast replays only the users its proposal reaches, but budgets are
spent by everyone; these read the window's whole table (Arrow, no Python per row) for the rows
of some users, the users the log shows being served some line items, and what budgeted
competitors were served to the users the replay leaves out (charged as its clock passes them).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from adtarget.decision.eligibility import has_budget
from adtarget.decision.models import LiveLineItem


def of_users(table: pa.Table, users: set[str]) -> pa.Table:
    """The rows of ``table`` whose user is in ``users`` (time order kept)."""
    return table.filter(pc.is_in(table.column("user_id"), pa.array(sorted(users), pa.string())))


def served_users(table: pa.Table, line_items: set[int]) -> set[str]:
    """Users the log shows being served any of ``line_items`` (in the replayed days)."""
    served = table.column("served").combine_chunks()
    hit = pc.is_in(pc.list_flatten(served), pa.array(sorted(line_items), pa.int64()))
    rows = pc.list_parent_indices(served).filter(hit)
    return set(pc.unique(pc.take(table.column("user_id"), rows)).to_pylist())


def outside_spend(
    table: pa.Table, reached: set[str], competitors: Sequence[LiveLineItem]
) -> list[tuple[float, int, int, float]]:
    """What budgeted competitors served, per the log, to the users the replay leaves out.

    Their budgets and pacing are spent by all users, so the replay charges these impressions as
    its clock passes them (``ReplaySpend.advance``): a competitor whose budget runs out on
    other users stops competing when it would. Scaled by ``1 / sample_rate`` like the rest.
    """
    budgeted = {it.id: it for it in competitors if has_budget(it)}
    if not budgeted:
        return []
    # the rows that served them first (few, or none: the log may not say what served), then
    # their users: filtering the million rows by user first was 80 ms that found nothing
    served = table.column("served").combine_chunks()
    items = pc.list_flatten(served)
    keep = pc.is_in(items, pa.array(sorted(budgeted), pa.int64()))
    rows = pc.list_parent_indices(served).filter(keep)
    left_out = pc.invert(
        pc.is_in(pc.take(table.column("user_id"), rows), pa.array(sorted(reached)))
    )
    ids = items.filter(keep).filter(left_out).to_pylist()
    rows = rows.filter(left_out)
    ts = pc.take(table.column("ts"), rows).to_pylist()
    rates = pc.take(table.column("sample_rate"), rows).to_pylist()
    out = []
    for when, li, rate in zip(ts, ids, rates, strict=True):
        item = budgeted[li]
        out.append((when, li, item.campaign_id, item.bid_cpm / 1000.0 / rate))
    out.sort(key=lambda event: event[0])  # the table is not in time order (replay_table)
    return out
