"""``ReplayIndex``: the serving index's answer moved to the replay's positions equals a real
``LineItemIndex`` built with the proposal in (and its old self out)."""

from __future__ import annotations

from itertools import islice

from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.decision.strategies import line_item, rules, users

from adtarget.decision.bits import Matches
from adtarget.decision.forecast_index import Listed, LiveMatches, ReplayIndex
from adtarget.decision.index import LineItemIndex
from adtarget.decision.profiles import MemoryProfileStore, merge_features
from adtarget.rules.eval_python import compile_rule


@settings(max_examples=120, deadline=None)
@given(
    live_rules=st.lists(rules(), min_size=1, max_size=8),
    proposal_rule=rules(),
    priority=st.integers(1, 5),
    replaces=st.booleans(),
    people=st.lists(users(), min_size=1, max_size=5),
)
def test_replay_index_equals_a_built_index(
    live_rules, proposal_rule, priority, replaces, people
) -> None:
    live_items = [line_item(i + 1, r) for i, r in enumerate(live_rules)]
    live = LineItemIndex(live_items)
    pid = 1 if replaces else 99  # an existing line item with changes, or a new one
    proposal = line_item(pid, proposal_rule, priority=priority, bid_cpm=12.5)
    built = LineItemIndex([*(it for it in live_items if it.id != pid), proposal])
    built_without = LineItemIndex([it for it in live_items if it.id != pid])
    memo = LiveMatches(live)
    drop = pid if replaces else None
    with_it, without = ReplayIndex(memo, proposal, drop), ReplayIndex(memo, None, drop)
    assert [it.id for it in with_it.items] == [it.id for it in built.items]
    assert with_it.facts == built.facts and with_it.rule_dims == built.rule_dims
    assert [it.id for it in without.items] == [it.id for it in built_without.items]
    hit = compile_rule(proposal_rule)
    for n, features in enumerate(people):
        key = (f"u{n}", "{}")
        with_it.use(key, hit(features))
        without.use(key, False)
        assert with_it.match(features).tolist() == built.match(features).tolist()
        assert without.match(features).tolist() == built_without.match(features).tolist()


@settings(max_examples=120, deadline=None)
@given(
    live_rules=st.lists(rules(), min_size=1, max_size=8),
    person=users(),
    contexts=st.lists(users(), min_size=1, max_size=4),
)
def test_matches_split_by_context_keys_equal_the_index(live_rules, person, contexts) -> None:
    """The profile's dimensions ORed once per user, the context's per request: the same bits
    as the index's own ``match`` of the merged features, in every context."""
    live = LineItemIndex([line_item(i + 1, r) for i, r in enumerate(live_rules)])
    memo = LiveMatches(live, context_keys={k for ctx in contexts for k in ctx})
    for n, ctx in enumerate(contexts):
        features = merge_features(person, ctx)
        assert memo.of(("u", str(n)), features) == live.match(features).bits


@given(bits=st.integers(0, 1 << 2_000), skip=st.integers(0, 40))
@example(bits=(1 << 3) | (1 << 600) | (1 << 1_500), skip=0)  # a short head in the low bits
@example(bits=(1 << 8) - 1, skip=7)  # exactly a head's worth
@example(bits=sum(1 << p for p in range(0, 1_200, 97)), skip=3)
def test_listed_matches_iterate_as_matches(bits, skip) -> None:
    listed, plain = Listed(bits), Matches(bits)
    assert listed.head == tuple(islice(plain, Listed.HEAD))
    assert list(listed) == list(plain)
    assert list(islice(listed, skip, None)) == list(islice(plain, skip, None))
    assert len(listed) == len(plain)


def test_profiles_read_in_a_batch_equal_one_by_one() -> None:
    store = MemoryProfileStore({"a": {"country": "US"}, "b": {"age": 30}})
    assert store.get_many(["b", "nobody", "a"]) == [store.get("b"), None, store.get("a")]
