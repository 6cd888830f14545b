"""A replay split across forked processes answers exactly as one replay in process, and falls
back to one when the parts' budget checks could differ from the whole's."""

from __future__ import annotations

import os

import pytest
from tests.decision.forecast_world import item
from tests.decision.test_forecast_proof import (
    _forecast,
    competitors,
    logged,  # noqa: F401  (fixture)
    proposal,
    world,  # noqa: F401  (fixture)
)

from adtarget.decision.forecast_fork import run_forked
from adtarget.decision.forecast_spend import parts_agree

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


def _answer(w, root, items, prop, processes: int) -> dict:
    answer = _forecast(w, root, items, prop, processes=processes)
    answer.pop("elapsed_ms")
    return answer


@pytest.mark.parametrize("budget", [None, 70.0, 8.0], ids=["no-budget", "budget", "budget-binds"])
def test_forked_parts_answer_as_one_replay(world, logged, budget) -> None:  # noqa: F811
    prop = proposal(budget=budget)
    one = _answer(world, logged, competitors(False), prop, 1)
    assert one.pop("replay_processes") == 1
    for n in (2, 3):
        split = _answer(world, logged, competitors(False), prop, n)
        used = split.pop("replay_processes")
        assert split == one
        if budget is None:  # nothing couples users: the parts' answers are used
            assert used == n


def test_a_binding_budget_falls_back_to_one_replay(world, logged) -> None:  # noqa: F811
    """The proposal's own budget binds (8.0 over a week, paced evenly): each part sees only
    its users' spend, so its checks pass where the whole replay's fail; the answer must be
    the whole replay's, replayed in process."""
    prop = proposal(budget=8.0)
    split = _answer(world, logged, competitors(False), prop, 2)
    assert split["replay_processes"] == 1


def test_a_campaign_budget_replays_in_process(world, logged) -> None:  # noqa: F811
    answer = _answer(world, logged, competitors(True), proposal(), 2)
    assert answer["replay_processes"] == 1


def test_parts_agree_only_when_no_check_changes() -> None:
    li = item(7, "", priority=1, bid=1.0, budget=1.0, pacing="asap")
    items = {7: li}
    read_at_10 = [(10.0, 7, 0.5)]  # part 0 read 0.5 of a 1.0 budget at t=10: passed
    assert parts_agree(items, [(read_at_10, []), ([], [(20.0, 7, 0.6)])])  # charged after
    assert not parts_agree(items, [(read_at_10, []), ([], [(5.0, 7, 0.6)])])  # before: 1.1
    assert parts_agree(items, [(read_at_10, []), ([], [(5.0, 7, 0.4)])])  # 0.9: still passes
    assert parts_agree(items, [([(10.0, 7, 1.2)], []), ([], [(5.0, 7, 0.6)])])  # failed in both


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
