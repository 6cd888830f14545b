"""Ad breaks through the real engine: duration, separation, caps across the break, unfilled
slots with reasons, min_duration, explain, and the checks of the request's ``pod``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adtarget.decision.counters import MemoryCounters, cap_key
from adtarget.decision.engine import DecisionEngine, StaticIndex
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import DecisionRequest, FrequencyCap, LiveLineItem, PodSpec
from adtarget.decision.pods import MAX_POD_SLOTS, parse_pod
from adtarget.decision.profiles import MemoryProfileStore
from adtarget.errors import InvalidValue

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
FLIGHT = {"campaign_start": NOW - timedelta(days=1), "campaign_end": NOW + timedelta(days=1)}


def ad(
    i: int,
    *,
    adv: int | None = None,
    seconds: float | None = 15,
    category: str | None = None,
    **kw: Any,
) -> LiveLineItem:
    """Line item ``i`` (rank = i: priority 1, bid falling with i) with one 15 s creative."""
    creative = 5000 + i
    base: dict[str, Any] = {
        "id": i,
        "campaign_id": 100 + i,
        "advertiser_id": adv if adv is not None else 1000 + i,
        "priority": 1,
        "bid_cpm": 100.0 - i,
        "rule": None,
        "creatives": {"video": (creative,)},
        "durations": {creative: seconds} if seconds is not None else {},
        "category": category,
        **FLIGHT,
    }
    base.update(kw)
    return LiveLineItem(**base)


def engine(items: list[LiveLineItem], counters: MemoryCounters | None = None) -> DecisionEngine:
    return DecisionEngine(
        index_holder=StaticIndex(LineItemIndex(items)),
        profiles=MemoryProfileStore({}, version="v1"),
        counters=counters or MemoryCounters(),
        clock=lambda: NOW,
    )


def pod(slots: int, max_duration: float, min_duration: float | None = None, **kw: Any) -> Any:
    req = DecisionRequest("u1", pod=PodSpec(slots, max_duration, min_duration), **kw)
    return req


def ids(result: Any) -> list[int]:
    return [d.line_item_id for d in result.decisions]


def test_fills_in_rank_order_within_the_duration() -> None:
    items = [ad(1, seconds=30), ad(2, seconds=30), ad(3, seconds=15), ad(4, seconds=10)]
    result = engine(items).decide(pod(4, 60))
    # 30 + 30 = 60: nothing more fits, slots 3 and 4 stay empty
    assert ids(result) == [1, 2]
    assert result.pod == {
        "filled": 2,
        "duration": 60.0,
        "unfilled": [
            {"slot": 3, "reason": "duration", "detail": "max_duration 60s used up"},
            {"slot": 4, "reason": "duration", "detail": "max_duration 60s used up"},
        ],
    }
    # a longer ad that does not fit is skipped, a shorter one behind it takes the slot
    result = engine(items).decide(pod(3, 50))
    assert ids(result) == [1, 3]
    assert result.pod["duration"] == 45.0
    assert result.pod["unfilled"][0]["reason"] == "duration"
    body = result.to_dict()
    assert body["pod"]["filled"] == 2 and [d["line_item_id"] for d in body["decisions"]] == [1, 3]


def test_no_two_ads_of_one_advertiser_or_category() -> None:
    items = [
        ad(1, adv=7),
        ad(2, adv=7),  # same advertiser as 1
        ad(3, category="auto"),
        ad(4, category="auto"),  # same category as 3
        ad(5, category="telecom"),
    ]
    result = engine(items).decide(pod(5, 120, explain=True))
    assert ids(result) == [1, 3, 5]
    why = {e["line_item_id"]: e for e in result.explain["not_served"]}
    assert why[2]["reason"] == "separation" and "advertiser 7" in why[2]["detail"]
    assert why[4]["reason"] == "separation" and "'auto'" in why[4]["detail"]
    assert result.pod["unfilled"] == [
        {
            "slot": s,
            "reason": "separation",
            "detail": "2 matching line item(s) skipped (separation 2); 75s left",
        }
        for s in (4, 5)
    ]


def test_creatives_without_duration_never_fill_and_the_fitting_creative_is_chosen() -> None:
    items = [
        ad(1, seconds=None),
        ad(
            2,
            creatives={"video": (20, 21, 22)},
            durations={20: 30.0, 21: 15.0, 22: 10.0},
        ),
    ]
    result = engine(items).decide(pod(2, 20, explain=True))
    assert [(d.line_item_id, d.creative_id) for d in result.decisions] == [(2, 21)]
    why = {e["line_item_id"]: e for e in result.explain["not_served"]}
    assert why[1]["reason"] == "no_duration" and "5001" in why[1]["detail"]
    only = engine([ad(1, seconds=None)]).decide(pod(1, 30))
    assert only.decisions == [] and only.pod["unfilled"][0]["reason"] == "no_duration"


def test_a_cap_of_one_serves_once_per_break_and_every_ad_is_counted() -> None:
    cap = FrequencyCap("campaign", 100, 1, 3600)
    # two line items of one campaign but different advertisers cannot exist in a catalog;
    # the engine still must not let a shared cap of 1 serve twice in one break
    items = [ad(1, caps=(cap,)), ad(2, caps=(cap,)), ad(3)]
    counters = MemoryCounters()
    result = engine(items, counters).decide(pod(3, 60))
    assert ids(result) == [1, 3]
    assert counters.counts([cap_key(cap, "u1", NOW.timestamp())], NOW.timestamp()) == [1]
    again = engine(items, counters).decide(pod(3, 60, explain=True))
    assert ids(again) == [3]
    reasons = {e["line_item_id"]: e["reason"] for e in again.explain["not_served"]}
    assert reasons[1] == reasons[2] == "frequency_cap"


def test_min_duration_is_a_floor_on_the_break_or_nothing_is_served_nor_counted() -> None:
    cap = FrequencyCap("line_item", 1, 5, 3600)
    items = [ad(1, seconds=15, caps=(cap,))]
    counters = MemoryCounters()
    result = engine(items, counters).decide(pod(2, 60, 30))
    assert result.decisions == []
    assert result.pod["filled"] == 0 and result.pod["duration"] == 0
    assert [u["reason"] for u in result.pod["unfilled"]] == ["min_duration"] * 2
    assert "15s of the 30s minimum" in result.pod["unfilled"][0]["detail"]
    assert counters.counts([cap_key(cap, "u1", NOW.timestamp())], NOW.timestamp()) == [0]
    met = engine([*items, ad(2, seconds=15)], counters).decide(pod(2, 60, 30))
    assert ids(met) == [1, 2] and met.pod["duration"] == 30.0


def test_nothing_matching_says_no_candidate_and_plain_requests_are_unchanged() -> None:
    result = engine([]).decide(pod(2, 30, 10))
    assert result.pod is not None
    assert [u["reason"] for u in result.pod["unfilled"]] == ["no_candidate"] * 2
    items = [ad(1, adv=7), ad(2, adv=7, seconds=None)]
    plain = engine(items).decide(DecisionRequest("u1", limit=5))
    assert ids(plain) == [1, 2] and plain.pod is None
    assert "pod" not in plain.to_dict()


def test_formats_restrict_the_creatives_a_break_may_use() -> None:
    item = ad(1, creatives={"video": (10,), "pause": (11,)}, durations={10: 30.0, 11: 5.0})
    result = engine([item]).decide(pod(1, 30, formats=("pause",)))
    assert [d.creative_id for d in result.decisions] == [11]
    result = engine([item]).decide(pod(1, 20, formats=("video",)))
    assert result.decisions == [] and result.pod["unfilled"][0]["reason"] == "duration"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slots": 0, "max_duration": 30}, "pod.slots"),
        ({"slots": -1, "max_duration": 30}, "pod.slots"),
        ({"slots": MAX_POD_SLOTS + 1, "max_duration": 30}, "pod.slots"),
        ({"slots": True, "max_duration": 30}, "pod.slots"),
        ({"slots": 2}, "pod.max_duration"),
        ({"slots": 2, "max_duration": 0}, "pod.max_duration"),
        ({"slots": 2, "max_duration": "30"}, "pod.max_duration"),
        ({"slots": 2, "max_duration": 30, "min_duration": 31}, "pod.min_duration"),
        ({"slots": 2, "max_duration": 30, "min_duration": -1}, "pod.min_duration"),
        ({"slots": 2, "max_duration": 30, "extra": 1}, "pod.extra"),
        ([2, 30], "pod"),
    ],
)
def test_bad_pods_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidValue) as err:
        parse_pod(body)
    assert err.value.field == field


def test_a_good_pod_parses() -> None:
    assert parse_pod({"slots": 4, "max_duration": 120, "min_duration": 60}) == PodSpec(4, 120, 60)
    assert parse_pod({"slots": 1, "max_duration": 15.5}) == PodSpec(1, 15.5, None)


class StaleReads(MemoryCounters):
    """Counters whose reads predate another process's increments (a lost cap race)."""

    def counts(self, keys: Any, now: float) -> list[int]:
        return [0 for _ in keys]


def test_an_ad_lost_to_a_cap_race_leaves_its_slot_or_the_whole_break_below_the_floor() -> None:
    a_cap = FrequencyCap("line_item", 1, 1, 3600)
    b_cap = FrequencyCap("line_item", 2, 5, 3600)
    a_key, b_key = (cap_key(c, "u1", NOW.timestamp()) for c in (a_cap, b_cap))
    items = [ad(1, caps=(a_cap,)), ad(2, caps=(b_cap,))]
    counters = StaleReads()
    counters.record([a_key], NOW.timestamp(), 3600)  # another process served 1 already
    kept = engine(items, counters).decide(pod(2, 60))
    assert ids(kept) == [2]
    assert kept.pod["unfilled"][0]["reason"] == "frequency_cap"
    assert kept.pod["duration"] == 15.0
    live = MemoryCounters.counts(counters, [a_key, b_key], NOW.timestamp())
    assert live == [1, 1]  # 1's increment given back, 2's kept
    dropped = engine(items, counters).decide(pod(2, 60, 30))
    assert dropped.decisions == [] and dropped.pod["unfilled"][0]["reason"] == "min_duration"
    live = MemoryCounters.counts(counters, [a_key, b_key], NOW.timestamp())
    assert live == [1, 1]  # both given back: nothing of the dropped break counted
