"""A forecast that reuses what an earlier one kept (``forecast_cache``) answers exactly as a
cold one: for another proposal on the same window, and after a user's profile changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.decision.forecast_world import item, make_world, serve
from tests.decision.test_forecast_proof import (
    FLIGHT_END,
    FLIGHT_START,
    HISTORY,
    NOW,
    competitors,
    proposal,
)

from adtarget.decision import forecast_cache
from adtarget.decision.eligibility import ZeroSpend
from adtarget.decision.forecast import forecast
from adtarget.decision.index import LineItemIndex
from adtarget.decision.profiles import MemoryProfileStore
from adtarget.decision.request_log import RequestLog
from adtarget.decision.request_store import ParquetRequestStore


@pytest.fixture(scope="module")
def world():
    return make_world(users=300)


@pytest.fixture(scope="module")
def logged(world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("requests")
    log = RequestLog(
        ParquetRequestStore(root), sample_rate=0.8, flush_rows=10**9, retention_days=100_000
    )
    serve(world, competitors(False), HISTORY, seed=1, log=log)
    log.flush()
    return root


def _run(live: LineItemIndex, root: Path, profiles: dict, prop) -> dict:
    answer = forecast(
        proposal=prop,
        live=live,
        store=ParquetRequestStore(root),
        profiles=MemoryProfileStore(profiles),
        spend=ZeroSpend(),
        now=NOW,
    )
    answer.pop("elapsed_ms")
    return answer


def _cold(live: LineItemIndex, root: Path, profiles: dict, prop) -> dict:
    forecast_cache.clear()
    return _run(live, root, profiles, prop)


def test_a_warm_forecast_equals_a_cold_one(world, logged: Path) -> None:
    live = LineItemIndex(competitors(False))  # no budgets: users' replays are not coupled
    profiles = {u: dict(p) for u, p in world.profiles.items()}
    other = item(51, 'country = "US"', priority=3, bid=6.0, cap=5,
                 start=FLIGHT_START, end=FLIGHT_END)  # fmt: skip
    _cold(live, logged, profiles, proposal(budget=None))  # fills the cache for the window
    warm = _run(live, logged, profiles, other)
    assert warm == _cold(live, logged, profiles, other)
    assert warm["contended"] and any(c["impressions_taken_from_it"] for c in warm["contended"])
    # users the first forecast replayed move from CA to US, where the capped competitor 1
    # and the other proposal reach them: what was kept for them is stale
    _run(live, logged, profiles, proposal(budget=None))
    for prof in profiles.values():
        if prof["country"] == "CA":
            prof["country"] = "US"
    warm = _run(live, logged, profiles, other)
    assert warm == _cold(live, logged, profiles, other)
