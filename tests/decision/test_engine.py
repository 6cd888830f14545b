"""DecisionEngine: ranking, limit, formats, features merge, caps at three levels, explain."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adtarget.decision.counters import (
    CounterStore,
    MemoryCounters,
    RedisCounters,
    SqliteCounters,
    cap_key,
)
from adtarget.decision.eligibility import DictSpend, parse_dayparting
from adtarget.decision.engine import DecisionEngine, StaticIndex
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import DecisionRequest, FrequencyCap, LiveLineItem
from adtarget.decision.profiles import MemoryProfileStore
from adtarget.rules.ast import Rule
from adtarget.rules.eval_python import compile_rule
from adtarget.rules.parse import parse

from .strategies import line_item, rules, users

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday
FLIGHT = {"campaign_start": NOW - timedelta(days=1), "campaign_end": NOW + timedelta(days=1)}
PROFILES = {
    "u1": {"country": "US", "age": 30, "genres": frozenset({"scifi"})},
    "u2": {"country": "FR", "age": 50},
}


def _engine(
    items: list[LiveLineItem], counters: CounterStore | None = None, spend: Any = None
) -> DecisionEngine:
    return DecisionEngine(
        index_holder=StaticIndex(LineItemIndex(items)),
        profiles=MemoryProfileStore(PROFILES, version="v000007"),
        counters=counters or MemoryCounters(),
        spend=spend,
        clock=lambda: NOW,
    )


def _ids(engine: DecisionEngine, user: str = "u1", **kw: Any) -> list[int]:
    return [d.line_item_id for d in engine.decide(DecisionRequest(user, **kw)).decisions]


def test_rank_by_priority_then_bid_then_id_and_limit() -> None:
    items = [
        line_item(1, None, priority=2, bid_cpm=50.0),
        line_item(2, None, priority=1, bid_cpm=5.0),
        line_item(3, None, priority=1, bid_cpm=7.5),
        line_item(4, None, priority=1, bid_cpm=7.5),
    ]
    engine = _engine(items)
    assert _ids(engine, limit=10) == [3, 4, 2, 1]
    assert _ids(engine) == [3]
    result = engine.decide(DecisionRequest("u1", limit=2))
    assert result.snapshot == "v000007" and not result.degraded
    first = result.to_dict()["decisions"][0]
    assert len(first.pop("decision_id")) == 24
    assert first == {
        "line_item_id": 3,
        "campaign_id": 100,
        "creative_id": 5003,
        "priority": 1,
        "bid_cpm": 7.5,
        "creative": {"id": 5003, "format": "video", "attributes": {}},
    }


def test_formats_pick_a_fitting_creative() -> None:
    items = [
        line_item(1, None, priority=1, creatives={"video": (11,), "pause": (9,)}),
        line_item(2, None, priority=2, creatives={"video": (21,)}),
    ]
    engine = _engine(items)
    r = engine.decide(DecisionRequest("u1", limit=5, formats=("pause",)))
    assert [(d.line_item_id, d.creative_id) for d in r.decisions] == [(1, 9)]
    r = engine.decide(DecisionRequest("u1", limit=5, formats=("video",)))
    assert [(d.line_item_id, d.creative_id) for d in r.decisions] == [(1, 11), (2, 21)]
    r = engine.decide(DecisionRequest("u1", limit=5))  # no formats: any, lowest id
    assert [(d.line_item_id, d.creative_id) for d in r.decisions] == [(1, 9), (2, 21)]


def test_profile_merged_with_context_context_wins_unknown_user_context_only() -> None:
    items = [
        line_item(1, parse('country = "US" and device = "tv"')),
        line_item(2, parse('country = "FR"')),
        line_item(3, parse("age is missing")),
    ]
    engine = _engine(items)
    assert _ids(engine, "u1", context={"device": "tv"}, limit=5) == [1]
    assert _ids(engine, "u1", context={"device": "tv", "country": "FR"}, limit=5) == [2]
    assert _ids(engine, "stranger", context={"country": "US", "device": "tv"}, limit=5) == [1, 3]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def counters(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounters()
    elif request.param == "sqlite":
        yield SqliteCounters(tmp_path / "c.sqlite3")
    else:
        prefix = request.getfixturevalue("redis_prefix")
        store = RedisCounters(request.getfixturevalue("redis_url"), prefix=prefix, timeout=1.0)
        yield store
        keys = store._client.keys(prefix + "*")
        if keys:
            store._client.delete(*keys)


def test_caps_at_line_item_campaign_and_advertiser_level(counters: CounterStore) -> None:
    li_cap = line_item(1, None, priority=1, caps=(FrequencyCap("line_item", 1, 2, 3600),))
    # items 2 and 3 share campaign 200 capped at 1 per hour; 4 and 5 share advertiser 9 (cap 2)
    camp = FrequencyCap("campaign", 200, 1, 3600)
    c2 = line_item(2, None, priority=2, campaign_id=200, caps=(camp,))
    c3 = line_item(3, None, priority=3, campaign_id=200, caps=(camp,))
    adv = FrequencyCap("advertiser", 9, 2, 86400)
    a4 = line_item(4, None, priority=4, advertiser_id=9, caps=(adv,))
    a5 = line_item(5, None, priority=5, advertiser_id=9, caps=(adv,))
    engine = _engine([li_cap, c2, c3, a4, a5, line_item(6, None, priority=6)], counters)
    req = DecisionRequest("u1", limit=10)
    # first request: the campaign cap lets only one of 2/3 through within the same answer
    assert [d.line_item_id for d in engine.decide(req).decisions] == [1, 2, 4, 5, 6]
    assert [d.line_item_id for d in engine.decide(req).decisions] == [1, 6]
    assert [d.line_item_id for d in engine.decide(req).decisions] == [6]
    # another user is not affected; a later window is fresh again
    assert [d.line_item_id for d in engine.decide(DecisionRequest("u2", limit=10)).decisions] == [
        1,
        2,
        4,
        5,
        6,
    ]
    later = engine.decide(req, now=NOW + timedelta(hours=1))
    assert [d.line_item_id for d in later.decisions] == [1, 2, 6]


def test_explain_names_the_first_reason_per_line_item() -> None:
    day = parse_dayparting({"tue": [9]})
    items = [
        line_item(1, parse('country in ("FR") and age > 18')),  # targeting (country)
        line_item(
            2, None, **FLIGHT, campaign_budget_total=100.0, campaign_pacing_mode="asap"
        ),  # budget
        line_item(
            3, None, campaign_start=NOW + timedelta(days=1), campaign_end=NOW + timedelta(days=2)
        ),  # flight
        line_item(4, None, dayparting=day),  # daypart (it is Monday)
        line_item(5, None, creatives={"banner": (1,)}),  # format
        line_item(6, None, priority=1, caps=(FrequencyCap("line_item", 6, 1, 60),)),
        line_item(7, None, **FLIGHT, campaign_budget_total=1000.0),  # pacing
        line_item(8, None, priority=4, bid_cpm=100.0),  # serves
        line_item(9, None, priority=4, bid_cpm=1.0),  # rank
        line_item(10, parse('not (genres has any ("scifi"))')),
    ]
    spend = DictSpend(campaigns={102: 100.0, 101: 900.0})
    # campaign ids: item i -> 100 + i % 3; item 2 -> 102 (spent), item 7 -> 101 (ahead of pace)
    engine = _engine(items, spend=spend)
    cap6 = FrequencyCap("line_item", 6, 1, 60)
    engine.counters.record([cap_key(cap6, "u1", NOW.timestamp())], NOW.timestamp(), 60)
    result = engine.decide(DecisionRequest("u1", limit=1, formats=("video",), explain=True))
    assert [d.line_item_id for d in result.decisions] == [8]
    assert result.explain is not None
    reasons = {e["line_item_id"]: (e["reason"], e["detail"]) for e in result.explain["not_served"]}
    assert reasons[1] == ("targeting", 'country in ("FR") failed (country = "US")')
    assert reasons[2][0] == "budget"
    assert reasons[3][0] == "flight"
    assert reasons[4][0] == "daypart"
    assert reasons[5][0] == "format"
    assert reasons[6][0] == "frequency_cap"
    assert reasons[7][0] == "pacing"
    assert reasons[9][0] == "rank"
    assert reasons[10] == ("targeting", 'not genres has any ("scifi") failed')
    assert set(reasons) == {1, 2, 3, 4, 5, 6, 7, 9, 10}
    assert result.to_dict()["explain"]["truncated"] is False
    assert engine.decide(DecisionRequest("u1")).explain is None


def test_limit_zero_and_empty_index() -> None:
    assert _ids(_engine([line_item(1, None)]), limit=0) == []
    assert _ids(_engine([]), limit=3) == []


class CountingCounters(MemoryCounters):
    """Real in-memory counters that also count how often the store is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def counts(self, keys: Any, now: float) -> list[int]:
        self.reads += 1
        return super().counts(keys, now)


def test_counters_of_the_first_candidates_are_read_in_one_round_trip() -> None:
    items = [
        line_item(i, None, priority=1, bid_cpm=5.0, caps=(FrequencyCap("line_item", i, 1, 60),))
        for i in range(1, 8)
    ]
    store = CountingCounters()
    engine = _engine(items, store)
    assert _ids(engine, limit=3) == [1, 2, 3]
    assert store.reads == 1
    assert _ids(engine, limit=3) == [4, 5, 6]
    assert store.reads == 2


class CountingSqlite(SqliteCounters):
    """Real SQLite counters that count reads of either kind (per key, per user)."""

    reads = 0

    def counts(self, keys: Any, now: float) -> list[int]:
        self.reads += 1
        return super().counts(keys, now)

    def user_counts(self, user_id: str, now: float) -> dict[str, int]:
        self.reads += 1
        return super().user_counts(user_id, now)


def test_a_walk_past_many_capped_candidates_reads_the_users_counters_once(
    tmp_path: Path,
) -> None:
    """Beyond the prefetched head every capped candidate used to cost a read of its own; a
    store that lists a user's counters (SQLite) is read once per request, whatever the walk."""
    items = [
        line_item(
            i, None, priority=1, bid_cpm=50.0 - i, caps=(FrequencyCap("line_item", i, 1, 60),)
        )
        for i in range(1, 41)
    ]
    store = CountingSqlite(tmp_path / "c.sqlite3")
    engine = _engine(items, store)
    assert _ids(engine, limit=1) == [1] and store.reads == 1
    first_30 = _ids(engine, limit=30)  # walks past item 1 (capped out) to 2..31
    assert first_30 == list(range(2, 32)) and store.reads == 2
    assert _ids(engine, limit=40) == list(range(32, 41)) and store.reads == 3
    assert _ids(engine, limit=40) == [] and store.reads == 4
    store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(rules(), min_size=1, max_size=10),
    users(),
    users(),
    st.integers(min_value=1, max_value=4),
)
def test_decisions_are_the_top_ranked_rule_matches(
    rule_list: list[Rule], profile: dict[str, Any], context: dict[str, Any], limit: int
) -> None:
    items = [line_item(i, r, priority=1 + i % 3) for i, r in enumerate(rule_list)]
    engine = DecisionEngine(
        index_holder=StaticIndex(LineItemIndex(items)),
        profiles=MemoryProfileStore({"u": profile}),
        counters=MemoryCounters(),
        clock=lambda: NOW,
    )
    features = {**profile, **context}
    want = sorted(
        (it for it in items if it.rule is None or compile_rule(it.rule)(features)),
        key=LiveLineItem.rank_key,
    )[:limit]
    got = engine.decide(DecisionRequest("u", context=context, limit=limit)).decisions
    assert [d.line_item_id for d in got] == [it.id for it in want]


def test_uncapped_answers_read_no_counters_and_capped_ones_read_once() -> None:
    """Counters are read only when a capped item is about to serve (with the next few)."""
    capped = (FrequencyCap("line_item", 0, 1, 60),)
    items = [
        line_item(1, None, priority=1, bid_cpm=9.0),
        line_item(2, None, priority=1, bid_cpm=8.0, caps=capped),
        line_item(3, None, priority=1, bid_cpm=7.0, caps=capped),
    ]
    store = CountingCounters()
    engine = _engine(items, store)
    assert _ids(engine, limit=1) == [1] and store.reads == 0
    assert _ids(engine, limit=3) == [1, 2] and store.reads == 1  # 3 shares the cap with 2
    assert _ids(engine, limit=3) == [1] and store.reads == 2


def test_flight_bounds_through_the_engine_start_inclusive_end_exclusive() -> None:
    """The engine's epoch-float flight check agrees with ``in_flight`` at the boundaries."""
    start, end = NOW - timedelta(hours=1), NOW + timedelta(hours=1)
    items = [
        line_item(1, None, start=start, end=end),
        line_item(2, None, campaign_start=start, campaign_end=end, end=NOW + timedelta(days=9)),
    ]
    engine = _engine(items)
    for now, want in (
        (start - timedelta(microseconds=1), []),
        (start, [1, 2]),
        (end - timedelta(microseconds=1), [1, 2]),
        (end, []),
    ):
        got = engine.decide(DecisionRequest("u1", limit=5), now=now)
        assert sorted(d.line_item_id for d in got.decisions) == want, now
    late = engine.decide(DecisionRequest("u1", limit=5, explain=True), now=end)
    assert late.explain is not None
    assert {e["reason"] for e in late.explain["not_served"]} == {"flight"}
