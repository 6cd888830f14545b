"""Property: over generated catalogs, users and breaks, every pod answer respects duration,
separation, one-per-pod and frequency caps, and is never emptier than a greedy fill of the
ranked candidates (evaluated line item by line item, without the index) under the same rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adtarget.decision.counters import MemoryCounters, cap_key
from adtarget.decision.engine import DecisionEngine, StaticIndex
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import DecisionRequest, FrequencyCap, LiveLineItem, PodSpec
from adtarget.decision.profiles import MemoryProfileStore
from adtarget.rules.eval_python import matches

from .strategies import rules, users

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TS = NOW.timestamp()
FLIGHT = {"campaign_start": NOW - timedelta(days=1), "campaign_end": NOW + timedelta(days=1)}
ADVERTISERS = 4
CATEGORIES = ("auto", "telecom", "food")


@st.composite
def catalogs(draw: st.DrawFn) -> list[LiveLineItem]:
    """Up to 12 line items over 4 advertisers (each with its campaigns), categories and caps
    at every level, creatives of 0-3 with and without durations and media URLs."""
    n = draw(st.integers(0, 12))
    adv_cap = {
        a: draw(st.none() | st.integers(1, 2)) for a in range(ADVERTISERS)
    }  # advertiser-level caps, shared by all of its line items
    items = []
    for i in range(1, n + 1):
        adv = draw(st.integers(0, ADVERTISERS - 1))
        camp = adv * 10 + draw(st.integers(0, 1))
        creatives = draw(st.lists(st.integers(1, 40), max_size=3, unique=True))
        durations = {
            c: float(d)
            for c in creatives
            if (d := draw(st.none() | st.sampled_from([5, 10, 15, 20, 30, 45]))) is not None
        }
        media = {
            c: {"media_url": f"https://cdn.example/{c}.mp4"}
            for c in creatives
            if draw(st.booleans())
        }
        caps: list[FrequencyCap] = []
        if draw(st.booleans()):
            caps.append(FrequencyCap("line_item", i, draw(st.integers(1, 2)), 3600))
        if adv_cap[adv] is not None:
            caps.append(FrequencyCap("advertiser", adv, adv_cap[adv] or 1, 3600))
        items.append(
            LiveLineItem(
                id=i,
                campaign_id=camp,
                advertiser_id=adv,
                priority=draw(st.integers(1, 3)),
                bid_cpm=float(draw(st.integers(1, 5))),
                rule=draw(st.none() | rules()),
                creatives={"video": tuple(sorted(creatives))} if creatives else {"video": (99,)},
                durations=durations,
                attributes=media,
                caps=tuple(caps),
                category=draw(st.none() | st.sampled_from(CATEGORIES)),
                **FLIGHT,
            )
        )
    return items


pods = st.builds(
    PodSpec,
    st.integers(1, 6),
    st.sampled_from([5.0, 15.0, 30.0, 45.0, 60.0, 120.0]),
    st.none() | st.sampled_from([5.0, 20.0, 40.0]),
    st.booleans(),  # playable: only creatives with a media URL (a VAST break)
).filter(lambda p: p.min_duration is None or p.min_duration <= p.max_duration)


def greedy(
    items: list[LiveLineItem], features: dict[str, Any], pod: PodSpec, counts: dict[str, int]
) -> list[tuple[int, int]]:
    """The reference fill: every line item checked on its own, in rank order."""
    out: list[tuple[int, int]] = []
    advertisers: set[int] = set()
    categories: set[str] = set()
    pending: dict[str, int] = {}
    left = pod.max_duration
    for item in sorted(items, key=LiveLineItem.rank_key):
        if len(out) >= pod.slots or left <= 0:
            break
        if item.rule is not None and not matches(item.rule, features):
            continue
        if item.advertiser_id in advertisers or (item.category in categories):
            continue
        fits = [
            c
            for ids in item.creatives.values()
            for c in ids
            if item.durations.get(c, 1e9) <= left and (not pod.playable or c in item.attributes)
        ]
        if not fits:
            continue
        keys = [cap_key(c, "u", TS) for c in item.caps]
        pairs = zip(item.caps, keys, strict=True)
        if any(counts.get(k, 0) + pending.get(k, 0) >= c.count for c, k in pairs):
            continue
        for k in keys:
            pending[k] = pending.get(k, 0) + 1
        creative = min(fits)
        out.append((item.id, creative))
        left -= item.durations[creative]
        advertisers.add(item.advertiser_id)
        if item.category is not None:
            categories.add(item.category)
    total = pod.max_duration - left
    if out and pod.min_duration is not None and total < pod.min_duration:
        return []
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=catalogs(), user=users(), breaks=st.lists(pods, min_size=1, max_size=3))
def test_every_break_keeps_the_rules_and_is_as_full_as_a_greedy_fill(
    items: list[LiveLineItem], user: dict[str, Any], breaks: list[PodSpec]
) -> None:
    counters = MemoryCounters()
    engine = DecisionEngine(
        index_holder=StaticIndex(LineItemIndex(items)),
        profiles=MemoryProfileStore({"u": user}, version="v1"),
        counters=counters,
        clock=lambda: NOW,
    )
    by_id = {it.id: it for it in items}
    all_keys = sorted({cap_key(c, "u", TS) for it in items for c in it.caps})
    for pod in breaks:  # one user, several breaks in a row: caps carry over between them
        before = dict(zip(all_keys, counters.counts(all_keys, TS), strict=True))
        expected = greedy(items, user, pod, before)
        result = engine.decide(DecisionRequest("u", pod=pod))
        got = [(d.line_item_id, d.creative_id) for d in result.decisions]
        served = [by_id[li] for li, _ in got]
        seconds = [it.durations[c] for it, (_, c) in zip(served, got, strict=True)]
        assert result.pod is not None
        # duration, and the floor when anything is served
        assert sum(seconds) <= pod.max_duration
        if got and pod.min_duration is not None:
            assert sum(seconds) >= pod.min_duration
        assert result.pod["filled"] == len(got) and result.pod["duration"] == sum(seconds)
        empty = [u["slot"] for u in result.pod["unfilled"]]
        assert empty == list(range(len(got) + 1, pod.slots + 1))
        if pod.playable:  # every ad of a VAST break can be played
            assert all(c in it.attributes for it, (_, c) in zip(served, got, strict=True))
        # separation and one-per-pod
        assert len({it.id for it in served}) == len(served)
        assert len({it.advertiser_id for it in served}) == len(served)
        cats = [it.category for it in served if it.category is not None]
        assert len(set(cats)) == len(cats)
        # caps: every ad of the break counted, none over its cap
        after = dict(zip(all_keys, counters.counts(all_keys, TS), strict=True))
        added: dict[str, int] = {}
        for it in served:
            for c in it.caps:
                k = cap_key(c, "u", TS)
                added[k] = added.get(k, 0) + 1
                assert after[k] <= c.count
        assert {k: after[k] - before[k] for k in all_keys} == {k: added.get(k, 0) for k in all_keys}
        # never emptier than the greedy fill (and here: the very same fill)
        assert len(got) >= len(expected)
        assert got == expected
