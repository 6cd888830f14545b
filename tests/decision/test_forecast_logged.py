"""``forecast_logged``: what the window's log says about users and budgets."""

from __future__ import annotations

import random

import pyarrow as pa
from tests.decision.forecast_world import item

from adtarget.decision.forecast_logged import outside_spend


def test_outside_spend_is_what_budgeted_competitors_served_users_left_out() -> None:
    """Every (time, line item, campaign, cost) a budgeted competitor was logged serving to a
    user the replay leaves out, in time order, scaled by ``1 / sample_rate``: the same as a
    plain loop over the rows."""
    rng = random.Random(5)
    budgets = [100.0 if i % 2 else None for i in range(7)]  # odd ids budgeted, 7 and 8 not live
    items = [item(i, "", priority=1, bid=2.0 * i, budget=budgets[i]) for i in range(1, 7)]
    users = [f"u{i}" for i in range(20)]
    rows = [
        (rng.uniform(0, 1e5), rng.choice(users), rng.sample(range(1, 9), rng.randint(0, 3)),
         rng.choice([0.5, 0.25]))
        for _ in range(300)
    ]  # fmt: skip
    table = pa.table(
        {
            "ts": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "served": pa.array([r[2] for r in rows], pa.list_(pa.int64())),
            "sample_rate": [r[3] for r in rows],
        }
    )
    reached = set(users[:8])
    of = {it.id: it for it in items if it.budget_total is not None}
    want = [
        (ts, li, of[li].campaign_id, of[li].bid_cpm / 1000.0 / rate)
        for ts, uid, served, rate in rows
        if uid not in reached
        for li in served
        if li in of
    ]
    want.sort(key=lambda event: event[0])
    got = outside_spend(table, reached, items)
    assert got == want and len(got) > 20
    nothing = pa.array([[]] * len(rows), pa.list_(pa.int64()))  # a log that says no served
    assert outside_spend(table.set_column(2, "served", nothing), reached, items) == []
