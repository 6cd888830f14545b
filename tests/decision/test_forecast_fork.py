"""A replay split across forked processes answers exactly as one replay in process, and falls
back to one when the parts' budget checks could differ from the whole's."""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from tests.decision.forecast_world import item
from tests.decision.test_forecast_proof import (
    _forecast,
    competitors,
    logged,  # noqa: F401  (fixture)
    proposal,
    world,  # noqa: F401  (fixture)
)

from adtarget.decision.eligibility import budget_reason
from adtarget.decision.forecast_fork import run_forked
from adtarget.decision.forecast_spend import CAMPAIGN, DAY, LINE_ITEM, _One, parts_agree

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


def _answer(w, root, items, prop, processes: int) -> dict:
    answer = _forecast(w, root, items, prop, processes=processes)
    answer.pop("elapsed_ms")
    return answer


@pytest.mark.parametrize("budget", [None, 70.0, 8.0], ids=["no-budget", "budget", "budget-binds"])
@pytest.mark.parametrize("daily", [False, True], ids=["", "campaign-daily-budget"])
def test_forked_parts_answer_as_one_replay(world, logged, budget, daily) -> None:  # noqa: F811
    prop = proposal(budget=budget)
    one = _answer(world, logged, competitors(daily), prop, 1)
    assert one.pop("replay_processes") == 1
    for n in (2, 3):
        split = _answer(world, logged, competitors(daily), prop, n)
        used = split.pop("replay_processes")
        assert split == one
        if budget is None and not daily:  # nothing couples users: the parts' answers are used
            assert used == n


def test_a_binding_budget_falls_back_to_one_replay(world, logged) -> None:  # noqa: F811
    """The proposal's own budget binds (8.0 over a week, paced evenly): each part sees only
    its users' spend, so its checks pass where the whole replay's fail; the answer must be
    the whole replay's, replayed in process."""
    prop = proposal(budget=8.0)
    split = _answer(world, logged, competitors(False), prop, 2)
    assert split["replay_processes"] == 1


def test_a_loose_campaign_budget_is_split(world, logged) -> None:  # noqa: F811
    """Every catalog line item has a campaign budget (a campaign's total is required): one
    that never binds must not keep the replay in process."""
    loose = [replace(it, campaign_budget_total=1e9) for it in competitors(False)]
    one = _answer(world, logged, loose, proposal(budget=None), 1)
    split = _answer(world, logged, loose, proposal(budget=None), 2)
    assert split.pop("replay_processes") == 2
    one.pop("replay_processes")
    assert split == one


def test_a_budget_that_cannot_bind_is_walked_on_its_flight_bounds_with_the_same_answer(
    world,  # noqa: F811
    logged,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line item that is ``slow`` only for a budget no replay can make fail is walked on the
    engine's fast path (``ReplayIndex(binding=...)``), and the answer is the one of checking
    its spend at every request."""
    import adtarget.decision.forecast as forecast_module
    from adtarget.decision.forecast_index import ReplayIndex

    built: list[ReplayIndex] = []

    class Kept(ReplayIndex):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    class AlwaysChecked(Kept):
        def __init__(self, live, proposal, drop_id, binding=None) -> None:
            super().__init__(live, proposal, drop_id, None)

    loose = [replace(it, campaign_budget_total=1e9) for it in competitors(False)]
    monkeypatch.setattr(forecast_module, "ReplayIndex", Kept)
    fast = _answer(world, logged, loose, proposal(budget=None), 1)
    assert built and not any(fact.slow for index in built for fact in index.facts)
    built.clear()
    monkeypatch.setattr(forecast_module, "ReplayIndex", AlwaysChecked)
    checked = _answer(world, logged, loose, proposal(budget=None), 1)
    assert built and all(sum(fact.slow for fact in index.facts) >= len(loose) for index in built)
    assert fast == checked


def test_parts_agree_only_when_no_check_changes() -> None:
    li = item(7, "", priority=1, bid=1.0, budget=1.0, pacing="asap")  # campaign 107
    items = [li]
    day = date(2026, 3, 9)

    def charged(ts: float, cost: float) -> list:
        return [(ts, 7, 107, day, cost)]

    read_at_10 = [(10.0, (LINE_ITEM, 7), 0.5)]  # part 0 read 0.5 of a 1.0 budget: passed
    assert parts_agree(items, [(read_at_10, []), ([], charged(20.0, 0.6))])  # charged after
    assert not parts_agree(items, [(read_at_10, []), ([], charged(5.0, 0.6))])  # before: 1.1
    assert parts_agree(items, [(read_at_10, []), ([], charged(5.0, 0.4))])  # 0.9: passes
    failed = [(10.0, (LINE_ITEM, 7), 1.2)]
    assert parts_agree(items, [(failed, []), ([], charged(5.0, 0.6))])  # failed in both
    # a campaign's daily budget: the other part's charges on that local day count
    daily = [replace(li, budget_total=None, campaign_budget_daily=1.0)]
    read_day = [(10.0, (DAY, (107, day)), 0.5)]
    assert not parts_agree(daily, [(read_day, []), ([], charged(5.0, 0.6))])
    other_day = [(5.0, 7, 107, date(2026, 3, 8), 0.6)]
    assert parts_agree(daily, [(read_day, []), ([], other_day)])
    total = [replace(li, budget_total=None, campaign_budget_total=1.0)]
    read_campaign = [(10.0, (CAMPAIGN, 107), 0.5)]
    assert not parts_agree(total, [(read_campaign, []), ([], other_day)])


def _agree_read_by_read(items, parts) -> bool:
    """``parts_agree`` as its docstring says it, one read at a time (two checks per read)."""
    of = {it.id: it for it in items}
    for p, (reads, _) in enumerate(parts):
        for ts, key, got in reads:
            more = 0.0
            for q, (_, charges) in enumerate(parts):
                if q != p:
                    more += sum(c for t, li, _, _, c in charges if t <= ts and key[1] == li)
            now = datetime.fromtimestamp(ts, UTC)
            passed = budget_reason(of[key[1]], _One(LINE_ITEM, got), now) is None
            if more > 0 and passed and budget_reason(of[key[1]], _One(LINE_ITEM, got + more), now):
                return False
    return True


@pytest.mark.parametrize("seed", range(40))
def test_parts_agree_in_blocks_answers_as_read_by_read(seed: int) -> None:
    """Reads checked a block at a time (one check at the block's highest total while it
    passes) give the same verdict as every read checked alone, near the even pace too."""
    rng = random.Random(seed)
    flight = (datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC))
    li = item(7, "", priority=1, bid=1.0, budget=100.0, start=flight[0], end=flight[1])
    lo, hi = flight[0].timestamp(), flight[1].timestamp()
    parts = []
    for _ in range(2):
        clock = sorted(rng.uniform(lo, hi) for _ in range(rng.randint(1, 200)))
        spent, reads, charges = 0.0, [], []
        for ts in clock:  # each part about half the pace (1.05 x the flight's fraction)
            pace = 100.0 * ((ts - lo) / (hi - lo) * 1.05 + 0.01)
            near = rng.random() < 0.01  # now and then a read just below the pace
            got = pace * rng.uniform(0.97, 1.0) if near else spent
            reads.append((ts, (LINE_ITEM, 7), got))
            cost = rng.uniform(0.0, 0.3)
            charges.append((ts, 7, 107, date(2026, 3, 9), cost))
            spent = min(pace * rng.uniform(0.3, 0.5), spent + cost)
        parts.append((reads, charges))
    assert parts_agree([li], parts) == _agree_read_by_read([li], parts)


def test_a_failed_or_killed_child_makes_the_caller_replay_itself() -> None:
    def ok(done) -> int:
        done(1)
        return os.getpid()

    def fails(done) -> int:
        raise RuntimeError("boom")

    def killed(done) -> int:
        os._exit(9)

    seen: list[int] = []
    pids = run_forked([ok, ok], seen.append)
    assert pids is not None and len(set(pids)) == 2 and os.getpid() not in pids
    assert run_forked([ok, fails]) is None
    assert run_forked([killed, ok]) is None


def test_children_that_answered_are_reaped_after_the_answers_are_back() -> None:
    """The answers come back as soon as the children have sent them; the children's exits
    (unmapping what they inherited) are waited for in the background, and none is left a
    zombie."""
    pids = run_forked([lambda done: os.getpid(), lambda done: os.getpid()])
    assert pids is not None and len(set(pids)) == 2
    deadline = time.monotonic() + 10
    left = list(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                os.kill(pid, 0)  # a zombie still answers
            except ProcessLookupError:
                left.remove(pid)
        time.sleep(0.02)
    assert left == []


def test_a_child_that_stops_reporting_is_killed_and_the_caller_works_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A child hung (a lock held by another thread at the fork, say) is killed after
    ``STALL_S`` without a word; a child that keeps reporting is waited for however long."""
    import adtarget.decision.forecast_fork as fork_module

    monkeypatch.setattr(fork_module, "STALL_S", 0.5)
    pid_file = os.pipe()

    def hangs(done) -> int:
        os.write(pid_file[1], str(os.getpid()).encode())
        time.sleep(60)
        return 1

    def reports(done) -> int:
        for i in range(8):  # 1.6 s in all, never 0.5 s without a word
            done(i)
            time.sleep(0.2)
        return 2

    started = time.monotonic()
    assert run_forked([hangs, reports]) is None
    assert time.monotonic() - started < 1.5  # before the one reporting has finished
    hung = int(os.read(pid_file[0], 64))
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)  # killed and reaped
    assert run_forked([reports, reports]) == [2, 2]


def test_children_are_read_when_the_process_has_over_1024_files_open() -> None:
    """A serving process can hold more than 1,024 descriptors (``select()`` fails above it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if max(soft, hard) < 1200:
        pytest.skip("cannot open 1,200 files here")
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2048), hard))
    held = [os.dup(0) for _ in range(1100)]
    try:
        assert run_forked([lambda done: 1, lambda done: 2]) == [1, 2]
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
