"""The levelled overlay: any sequence of patches answers like an index built from scratch."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adtarget.decision.index import LineItemIndex
from adtarget.decision.loader import LoadedCatalog
from adtarget.decision.models import LiveLineItem
from adtarget.decision.patched_index import MERGE_RATIO, PatchedIndex, differences
from adtarget.rules.ast import Rule

from .strategies import line_item, rules, users

IDS = range(1, 13)

# one patch: line items set to a new rule and priority, or taken out of the live set
patch = st.dictionaries(
    st.sampled_from(IDS),
    st.one_of(st.none(), st.tuples(rules(), st.integers(1, 3), st.floats(0.5, 9.0))),
    min_size=1,
    max_size=4,
)


def _ranked(index: PatchedIndex | LineItemIndex, user: dict[str, Any]) -> list[int]:
    return [index.items[p].id for p in index.match(user)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(rules(), min_size=len(IDS), max_size=len(IDS)),
    st.lists(patch, min_size=1, max_size=25),
    st.lists(users(), min_size=1, max_size=5),
)
def test_patches_answer_like_a_rebuild(
    start: list[Rule], patches: list[dict[int, Any]], people: list[dict[str, Any]]
) -> None:
    live: dict[int, LiveLineItem] = {i: line_item(i, r) for i, r in zip(IDS, start, strict=True)}
    index = PatchedIndex.of(LineItemIndex(list(live.values())))
    history = [index]
    for step, changes in enumerate(patches):
        for li_id, new in changes.items():
            if new is None:
                live.pop(li_id, None)
            else:
                rule, priority, bid = new
                live[li_id] = line_item(li_id, rule, priority=priority, bid_cpm=bid)
        fresh = [live[i] for i in changes if i in live]
        index = index.patched(frozenset(changes), LoadedCatalog(fresh, []), f"p{step}")
        history.append(index)
        rebuilt = LineItemIndex(list(live.values()))
        assert len(index) == len(rebuilt)
        assert not differences(index, PatchedIndex.of(rebuilt))
        for user in people:
            # same line items in the same rank order (ties broken by id in both)
            assert _ranked(index, user) == _ranked(rebuilt, user)
    # an older index keeps answering as it did: later patches only appended
    assert len(history[0]) == len(IDS)
    for user in people:
        assert _ranked(history[0], user) == _ranked(PatchedIndex.of(history[0].base), user)


def test_levels_stay_logarithmic_and_entries_are_not_rebuilt_per_patch() -> None:
    live = {i: line_item(i, None) for i in range(1, 1001)}
    index = PatchedIndex.of(LineItemIndex(list(live.values())))
    for li_id in range(1, 257):
        live[li_id] = line_item(li_id, None, priority=5)  # never the base's (1-4)
        index = index.patched(frozenset({li_id}), LoadedCatalog([live[li_id]], []), "p")
    # 256 single-item patches: each level over MERGE_RATIO times the next, so few levels ...
    assert len(index.levels) <= 1 + math.log(256, MERGE_RATIO) + 1
    assert sum(lv.live for lv in index.levels) == 256
    # ... and a few rebuilds per entry, not every changed entry per patch (256 * 257 / 2)
    assert len(index.items) - 1000 <= 256 * 4 * MERGE_RATIO
    assert _ranked(index, {}) == _ranked(LineItemIndex(list(live.values())), {})


def test_a_line_item_patched_back_to_its_base_version_is_served_from_the_base() -> None:
    live = {i: line_item(i, None, priority=1 + i % 3) for i in range(1, 101)}
    base = LineItemIndex(list(live.values()))
    index = PatchedIndex.of(base)
    paused = index.patched(frozenset({7}), LoadedCatalog([], []), "pause")
    assert paused.live_item(7) is None and paused.gone == {7} and len(paused) == 99
    # the resume reloads an equal (not the same) object: no delta level, nothing masked
    resumed = paused.patched(
        frozenset({7}), LoadedCatalog([line_item(7, None, priority=2)], []), "r"
    )
    assert resumed.gone == frozenset() and resumed.levels == () and len(resumed) == 100
    assert resumed.live_item(7) is base.items[base.position_of[7]]
    assert type(resumed.match({})) is type(index.match({}))  # no merge on the request path
    assert resumed.flat() is base
    # a different version still goes to a delta, and back again to the base
    other = line_item(7, None, priority=2, bid_cpm=99.0)
    bid = resumed.patched(frozenset({7}), LoadedCatalog([other], []), "b")
    assert bid.gone == {7} and bid.live_item(7) is other
    rebuilt = LineItemIndex([*(it for i, it in live.items() if i != 7), other])
    assert _ranked(bid, {}) == _ranked(rebuilt, {})
    again = bid.patched(frozenset({7}), LoadedCatalog([line_item(7, None, priority=2)], []), "a")
    assert again.gone == frozenset() and sum(lv.live for lv in again.levels) == 0
    assert _ranked(again, {}) == _ranked(base, {})
    assert not differences(again, PatchedIndex.of(base))
