"""The issue's proof: a forecast from the sampled log matches what the engine then serves.

History is served and logged (80% of the users sampled); then a future drawn from the same
distribution is served by the real engine with the proposal booked. The forecast must be within
10% of what the proposal actually got, and its 95% interval must contain it — with a frequency
cap, budgets (a competitor's daily budget, spent by users the proposal cannot reach too, and the
proposal's own total budget, paced evenly) and higher- and lower-priority competitors in play.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from tests.decision.forecast_world import days_from, item, make_world, serve

from adtarget.decision.eligibility import ZeroSpend
from adtarget.decision.forecast import forecast
from adtarget.decision.index import LineItemIndex
from adtarget.decision.profiles import MemoryProfileStore
from adtarget.decision.request_log import RequestLog
from adtarget.decision.request_store import ParquetRequestStore

TODAY = date(2026, 3, 2)  # a Monday
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HISTORY = days_from(TODAY - timedelta(days=14), 14)
FLIGHT_START = datetime(2026, 3, 9, tzinfo=UTC)
FLIGHT = days_from(FLIGHT_START.date(), 7)
FLIGHT_END = FLIGHT_START + timedelta(days=7)


def competitors(budgets: bool = True) -> list:
    return [
        item(1, 'country = "US"', priority=2, bid=5.0, cap=2),  # above, capped per user
        # above, on another audience, with a daily budget spent by 9 am on every user it reaches
        item(
            2,
            "age between 30 and 45",
            priority=4,
            bid=3.0,
            daily=2.0 if budgets else None,
            pacing="asap",
        ),  # fmt: skip
        item(3, "", priority=10, bid=1.0),  # below: the proposal takes from it
    ]


def proposal(li_id: int = 50, budget: float | None = 70.0):
    return item(
        li_id,
        'country in ("US", "CA") and device = "tv"',
        priority=5,
        bid=4.0,
        cap=3,
        budget=budget,
        start=FLIGHT_START,
        end=FLIGHT_END,
    )


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def logged(world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("requests")
    log = RequestLog(
        ParquetRequestStore(root), sample_rate=0.8, flush_rows=10**9, retention_days=100_000
    )
    serve(world, competitors(), HISTORY, seed=1, log=log)
    log.flush()
    assert log.dropped == 0
    return root


def _forecast(world, root: Path, items, prop, **kw) -> dict:
    return forecast(
        proposal=prop,
        live=LineItemIndex(items),
        store=ParquetRequestStore(root),
        profiles=MemoryProfileStore(world.profiles),
        spend=ZeroSpend(),
        now=NOW,
        **kw,
    )


@pytest.mark.parametrize("budget", [70.0, 8.0], ids=["competitor-budget-binds", "own-budget-binds"])
def test_forecast_within_ten_percent_of_what_the_engine_then_serves(
    world, logged, budget: float
) -> None:
    answer = _forecast(world, logged, competitors(), proposal(budget=budget))
    served = serve(world, [*competitors(), proposal(budget=budget)], FLIGHT, seed=99)
    actual = served[50]
    assert served[2] <= 7 * (2.0 / 3.0 * 1000 + 1)  # the competitor's daily budget binds
    got = answer["forecast_impressions"]
    assert abs(got - actual) <= 0.10 * actual, (got, actual)
    assert answer["confidence"]["low"] <= actual <= answer["confidence"]["high"], (answer, actual)
    # caps, budgets and priorities really were in play
    assert answer["sample_rate"] == 0.8
    assert answer["matched_requests"] > answer["available_impressions"] > got
    lost = {c["line_item_id"]: c for c in answer["contended"]}
    assert lost[1]["impressions_lost_to_it"] > 0  # the higher-priority US item
    assert lost[2]["impressions_lost_to_it"] > 0  # the higher-priority, budgeted one
    assert lost[3]["impressions_taken_from_it"] == pytest.approx(got, abs=2)  # the catch-all
    assert len(answer["by_day"]) == 7
    assert sum(d["forecast_impressions"] for d in answer["by_day"]) == pytest.approx(got, abs=7)
    if budget == 8.0:  # 8 at 4 CPM is 2,000 impressions at most, paced evenly
        assert got <= 2_002 and answer["confidence"]["high"] <= 2_003  # one over, as served


@pytest.mark.parametrize("budgets", [True, False], ids=["with-budgets", "without-budgets"])
def test_contention_a_higher_priority_item_lowers_the_forecast_by_what_it_takes(
    world, logged, budgets: bool
) -> None:
    base = competitors(budgets)
    budget = 70.0 if budgets else None
    before = _forecast(world, logged, base, proposal(budget=budget))["forecast_impressions"]
    rival = item(60, 'country = "CA" and device = "tv"', priority=3, bid=2.0, cap=4,
                 start=FLIGHT_START, end=FLIGHT_END)  # fmt: skip
    # what the rival would take from the booked proposal, forecast for the rival
    rival_answer = _forecast(world, logged, [*base, proposal(budget=budget)], rival)
    takes = {c["line_item_id"]: c for c in rival_answer["contended"]}[50]
    taken = takes["impressions_taken_from_it"]
    after = _forecast(world, logged, [*base, rival], proposal(budget=budget))[
        "forecast_impressions"
    ]
    assert taken > 0
    assert abs((before - after) - taken) <= 0.10 * taken, (before, after, taken)
    # and the engine agrees: with the rival booked it serves the proposal what was forecast
    served_after = serve(world, [*base, rival, proposal(budget=budget)], FLIGHT, seed=5)[50]
    assert abs(after - served_after) <= 0.10 * served_after, (after, served_after)


def test_a_rule_with_no_history_says_so(world, logged) -> None:
    prop = item(70, 'country = "FR"', priority=5, bid=4.0, start=FLIGHT_START, end=FLIGHT_END)
    answer = _forecast(world, logged, competitors(), prop)
    assert answer["no_history"] is True
    assert answer["forecast_impressions"] is None
    assert "match the targeting" in answer["message"]


def test_an_empty_log_says_so(world, tmp_path: Path) -> None:
    answer = _forecast(world, tmp_path, competitors(), proposal())
    assert answer["no_history"] is True and answer["forecast_impressions"] is None
    assert "no sampled requests" in answer["message"]


def test_the_twin_deciding_only_where_answers_can_differ_equals_the_full_replay(
    world, logged, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay without the proposal decides only the requests whose answer can differ
    (``forecast_twin``: the proposal served, or a candidate whose counters or spend the two
    replays made different; elsewhere it is told what was served), and a request whose walk
    examined only steady candidates is decided once per user (``forecast_walks``); forcing
    both replays to decide every request gives the same answer, with no budget, with the
    binding daily budget of a competitor, with capped competitors the proposal takes
    impressions from, and with a budget spent elsewhere."""
    import adtarget.decision.forecast as forecast_module

    capped = [*competitors(), item(4, 'country = "CA"', priority=7, bid=2.0, cap=1)]
    # below the proposal, on everyone, a daily budget that runs out: what the proposal takes
    # from it is spent on other users' requests instead (its spend parts the two replays)
    spent = [*competitors(), item(5, "", priority=8, bid=2.0, daily=1.0, pacing="asap")]
    cases = [
        (competitors(False), proposal(budget=None)),
        (competitors(), proposal()),
        (capped, proposal(budget=None)),
        (spent, proposal(budget=None)),
    ]
    full_inputs = forecast_module.Inputs
    for items, prop in cases:
        monkeypatch.setattr(forecast_module, "Inputs", full_inputs)
        short = _forecast(world, logged, items, prop)
        short.pop("elapsed_ms")
        monkeypatch.setattr(
            forecast_module,
            "Inputs",
            lambda *args, **kw: full_inputs(*args, **{**kw, "twin_full": True, "walks_off": True}),
        )
        full = _forecast(world, logged, items, prop)
        full.pop("elapsed_ms")
        assert full == short
        assert any(c["impressions_taken_from_it"] for c in short["contended"])
