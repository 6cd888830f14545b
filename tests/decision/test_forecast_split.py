"""A forecast split by user from the reach on (``forecast_split``) answers exactly as one
process, is taken only when no competitor's budget can tie users together, and keeps the
twin totals it made for the next forecast."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest
import redis
from tests.decision.forecast_world import item
from tests.decision.test_forecast_proof import (
    FLIGHT_END,
    FLIGHT_START,
    NOW,
    _forecast,
    competitors,
    logged,  # noqa: F401  (fixture)
    proposal,
    world,  # noqa: F401  (fixture)
)

from adtarget.audience.build import SnapshotBuilder
from adtarget.audience.redis_profiles import load_snapshot_into_redis
from adtarget.audience.store import SnapshotStore
from adtarget.decision import forecast_cache, forecast_split
from adtarget.decision.eligibility import ZeroSpend
from adtarget.decision.forecast import forecast
from adtarget.decision.forecast_reach import find_reach
from adtarget.decision.forecast_window import (
    Rates,
    merge_rates,
    plan_days,
    rates_of,
    replay_table,
    rows_of,
)
from adtarget.decision.index import LineItemIndex
from adtarget.decision.profiles import MemoryProfileStore, SnapshotProfileStore
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.decision.request_store import ParquetRequestStore
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many processes each split by user forked (the real ``run_forked``, counted)."""
    seen: list[int] = []
    real = forecast_split.run_forked

    def counted(tasks, *args, **kw):
        seen.append(len(tasks))
        return real(tasks, *args, **kw)

    monkeypatch.setattr(forecast_split, "run_forked", counted)
    return seen


def _answer(w, root, items, prop, processes: int) -> dict:
    forecast_cache.clear()
    answer = _forecast(w, root, items, prop, processes=processes)
    answer.pop("elapsed_ms", None)
    return answer


@pytest.mark.parametrize("loose", [False, True], ids=["no-budget", "loose-campaign-budget"])
def test_split_by_user_answers_as_one_process(world, logged, forks, loose) -> None:  # noqa: F811
    items = competitors(False)
    if loose:  # a campaign budget no replay can spend does not tie users together
        items = [replace(it, campaign_budget_total=1e9) for it in items]
    one = _answer(world, logged, items, proposal(budget=None), 1)
    assert forks == [] and one.pop("replay_processes") == 1
    for n in (2, 3):
        split = _answer(world, logged, items, proposal(budget=None), n)
        assert forks[-1] == n
        assert split.pop("replay_processes") == n
        assert split == one
    assert one["forecast_impressions"] > 0 and one["contended"]


def test_a_proposal_budget_checked_alike_is_split(world, logged, forks) -> None:  # noqa: F811
    """The proposal's own budget (70.0 over a week) never runs out: every part's checks are
    those of one replay, so the parts' answers are used."""
    one = _answer(world, logged, competitors(False), proposal(budget=70.0), 1)
    split = _answer(world, logged, competitors(False), proposal(budget=70.0), 2)
    assert forks == [2] and split.pop("replay_processes") == 2
    one.pop("replay_processes")
    assert split == one


def test_a_proposal_budget_that_binds_replays_once_in_process(world, logged, forks) -> None:  # noqa: F811
    """Its budget (8.0) runs out: each part sees only its users' spend, so the parts' checks
    differ from one replay's; the answer is one replay's, made in process (not split again)."""
    one = _answer(world, logged, competitors(False), proposal(budget=8.0), 1)
    split = _answer(world, logged, competitors(False), proposal(budget=8.0), 2)
    assert forks == [2] and split["replay_processes"] == 1
    assert split == one


def test_a_competitor_budget_that_may_bind_is_not_split_by_user(world, logged, forks) -> None:  # noqa: F811
    """A daily campaign budget spent by 9 am ties users together: no split by user."""
    one = _answer(world, logged, competitors(True), proposal(budget=None), 1)
    split = _answer(world, logged, competitors(True), proposal(budget=None), 2)
    assert forks == []
    one.pop("replay_processes"), split.pop("replay_processes")
    assert split == one


def test_no_reached_user_says_so_as_one_process(world, logged, forks) -> None:  # noqa: F811
    nobody = replace(proposal(budget=None), rule=parse('country = "FR"'))
    one = _answer(world, logged, competitors(False), nobody, 1)
    split = _answer(world, logged, competitors(False), nobody, 2)
    assert forks == [2]
    assert one["no_history"] is True and split == one


def test_twins_made_in_the_processes_are_kept_for_the_next_forecast(world, logged, forks) -> None:  # noqa: F811
    """A warm forecast (another proposal on the same window and catalog) uses the twin totals
    the split one sent back, and answers as a cold one."""
    live = LineItemIndex(competitors(False))
    profiles = MemoryProfileStore(world.profiles)

    def run(prop) -> dict:
        answer = forecast(proposal=prop, live=live, store=ParquetRequestStore(logged),
                          profiles=profiles, spend=ZeroSpend(), now=NOW, processes=2)  # fmt: skip
        answer.pop("elapsed_ms")
        return answer

    other = item(51, 'country = "US"', priority=3, bid=6.0, cap=5,
                 start=FLIGHT_START, end=FLIGHT_END)  # fmt: skip
    forecast_cache.clear()
    run(proposal(budget=None))
    [kept] = [twins for twins in forecast_cache.cache_for(live).twins.values()]
    assert len(kept) > 100  # every reached user's totals without the proposal
    warm = run(other)
    forecast_cache.clear()
    assert warm == run(other) and forks == [2, 2, 2]
    assert any(c["impressions_taken_from_it"] for c in warm["contended"])


def _snapshot_of(w, root: Path) -> SnapshotStore:
    """The world's profiles published as a snapshot (the embedded default's store)."""
    store = SnapshotStore(root)
    builder = SnapshotBuilder(
        store=store,
        base=None,
        registry={"country": DimensionSpec("country", "category"),
                  "age": DimensionSpec("age", "number")},
    )  # fmt: skip
    ids = sorted(w.profiles)
    builder.add_batch(
        pa.record_batch(
            {
                "user_id": ids,
                "country": [w.profiles[u].get("country") for u in ids],
                "age": [w.profiles[u].get("age") for u in ids],
            }
        )
    )
    store.publish(builder.finish())
    return store


def _run(root: Path, live: LineItemIndex, profiles, processes: int) -> dict:
    forecast_cache.clear()
    answer = forecast(
        proposal=proposal(budget=None),
        live=live,
        store=ParquetRequestStore(root),
        profiles=profiles,
        spend=ZeroSpend(),
        now=NOW,
        processes=processes,
    )
    answer.pop("elapsed_ms")
    return answer


def test_a_snapshot_profile_store_is_split_and_answers_as_one_process(
    world,  # noqa: F811
    logged,  # noqa: F811
    forks,
    tmp_path: Path,
) -> None:
    """The embedded default's profile store (the published snapshot): the children read the
    handle resolved before the fork (``fork_reader``), and answer as one process."""
    profiles = SnapshotProfileStore(_snapshot_of(world, tmp_path / "snapshots"))
    live = LineItemIndex(competitors(False))
    one, split = _run(logged, live, profiles, 1), _run(logged, live, profiles, 2)
    assert forks == [2] and split.pop("replay_processes") == 2
    one.pop("replay_processes")
    assert split == one and one["forecast_impressions"] > 0


def test_redis_profiles_are_split_by_user_each_process_with_its_own_connections(
    world,  # noqa: F811
    logged,  # noqa: F811
    forks,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """Redis profiles: each forked process reads through connections it opens itself (never
    the parent's pool, which the parent's threads share), the version pinned before the
    fork; the same answer as one process."""
    snap = _snapshot_of(world, tmp_path / "snapshots").current()
    assert snap is not None
    client = redis.Redis.from_url(redis_url)
    load_snapshot_into_redis(snap, client, prefix=redis_prefix)
    profiles = RedisProfileStore(redis_url, prefix=redis_prefix, timeout=1.0)
    live = LineItemIndex(competitors(False))
    one, split = _run(logged, live, profiles, 1), _run(logged, live, profiles, 2)
    assert forks == [2]
    assert split.pop("replay_processes") == 2
    one.pop("replay_processes")
    assert split == one and one["forecast_impressions"] > 0
    reader = profiles.fork_reader()
    assert reader.version() == profiles.version()
    assert reader.get_many(sorted(world.profiles)[:5]) == profiles.get_many(
        sorted(world.profiles)[:5]
    )
    profiles.close()
    client.close()


class _OneByOne:
    """A profile store with no ``fork_reader`` (nothing known to be safe after a fork)."""

    def __init__(self, profiles: dict) -> None:
        self._profiles = profiles

    def get(self, user_id: str):
        return self._profiles.get(user_id)

    def version(self) -> str:
        return "v"


def test_a_store_with_no_fork_reader_is_not_split_by_user(
    world,  # noqa: F811
    logged,  # noqa: F811
    forks,
) -> None:
    """No split by user, the same answer (its replay alone may still be split)."""
    profiles = _OneByOne(world.profiles)
    live = LineItemIndex(competitors(False))
    one, split = _run(logged, live, profiles, 1), _run(logged, live, profiles, 2)
    assert forks == []
    one.pop("replay_processes"), split.pop("replay_processes")
    assert split == one and one["forecast_impressions"] > 0


def test_reach_shares_are_disjoint_and_cover_the_whole_reach(world, logged) -> None:  # noqa: F811
    store = ParquetRequestStore(logged)
    table = replay_table(store, plan_days(FLIGHT_START, FLIGHT_END, store.days()), FLIGHT_START,
                         FLIGHT_END)  # fmt: skip
    profiles = MemoryProfileStore(world.profiles)
    whole = find_reach(proposal(), table, profiles)
    shares = [find_reach(proposal(), table, profiles, share=(k, 3)) for k in range(3)]
    assert set().union(*(s.users for s in shares)) == whole.users
    assert sum(len(s.users) for s in shares) == len(whole.users) > 0
    rows = [rows_of(table.filter(s.rows)) for s in shares]
    assert sorted(r for part in rows for r in part) == sorted(rows_of(table.filter(whole.rows)))
    merged = merge_rates([rates_of(part) for part in rows])
    assert merged == rates_of(rows_of(table.filter(whole.rows)))
    assert list(merged.first) == list(rates_of(rows_of(table.filter(whole.rows))).first)


def test_merge_rates_orders_users_by_their_first_request() -> None:
    a = Rates({"u1": (5.0, 0.5), "u3": (9.0, 0.5)}, {"u1": 0.25, "u3": 0.5}, 4)
    b = Rates({"u2": (7.0, 1.0)}, {"u2": 1.0}, 1)
    merged = merge_rates([a, b])
    assert list(merged.first) == ["u1", "u2", "u3"] and list(merged.last) == ["u1", "u2", "u3"]
    assert merged.last["u1"] == 0.25 and merged.rows == 5
