"""``find_reach`` (profile part per user, context part per pair) equals evaluating every request."""

from __future__ import annotations

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.decision.strategies import line_item, rules, users

from adtarget.decision.forecast_reach import ByProjection, find_reach, sampled
from adtarget.decision.profiles import MemoryProfileStore, merge_features
from adtarget.rules.eval_python import compile_rule
from adtarget.rules.parse import parse

CONTEXTS = [
    {},
    {"country": "US"},
    {"kids": True},
    {"device": "tv"},
    {"country": "FR", "kids": False},
]


@settings(max_examples=150, deadline=None)
@given(
    rule=rules(),
    profiles=st.lists(users(), min_size=1, max_size=6),
    requests=st.lists(st.tuples(st.integers(0, 6), st.integers(0, len(CONTEXTS) - 1)), max_size=25),
)
def test_reach_equals_every_request_evaluated(rule, profiles, requests) -> None:
    store = MemoryProfileStore({f"u{i}": p for i, p in enumerate(profiles)})  # u6: no profile
    table = pa.table(
        {
            "user_id": [f"u{u}" for u, _ in requests] or pa.array([], pa.string()),
            "context": [orjson.dumps(CONTEXTS[c]).decode() for _, c in requests]
            or pa.array([], pa.string()),
        }
    )
    if table.num_rows == 0:
        return
    reach = find_reach(line_item(1, rule), table, store)
    match = compile_rule(rule)
    for (u, c), ctx in zip(requests, table.column("context").to_pylist(), strict=True):
        uid = f"u{u}"
        expected = match(merge_features(store.get(uid), CONTEXTS[c]))
        assert reach.matches(uid, ctx) == expected, (rule, uid, CONTEXTS[c])
        if expected:
            assert uid in reach.users


@settings(max_examples=150, deadline=None)
@given(
    rule=rules(),
    profiles=st.lists(st.one_of(st.none(), users()), max_size=30),
    split=st.integers(0, 30),
)
def test_profile_part_in_a_batch_equals_one_by_one(rule, profiles, split) -> None:
    """``ByProjection.many`` (keys projected in a batch, answers looked up) answers as the rule
    evaluated on each profile, also when an earlier batch filled its memo."""
    batched, single = ByProjection(rule), compile_rule(rule)
    got = batched.many(profiles[:split]) + batched.many(profiles[split:])
    assert got == [single(merge_features(p, {})) for p in profiles]


def test_profile_part_tells_apart_users_alike_on_one_key_only() -> None:
    """Users equal on one key the rule reads and different on another get their own answers
    (a projection of fewer keys than the rule reads would answer them alike)."""
    rule = parse('country = "US" and age > 30 and genres has any ("scifi")')
    profiles = [
        {"country": "US", "age": 40, "genres": frozenset({"scifi"})},
        {"country": "US", "age": 20, "genres": frozenset({"scifi"})},
        {"country": "US", "age": 40, "genres": frozenset()},
        None,
        {"country": "US", "age": 40, "genres": ["scifi"]},  # unhashable: one by one
        {"country": "CA", "age": 40, "genres": frozenset({"scifi"})},
        {"country": "US", "age": 40, "genres": frozenset({"scifi"})},
    ]
    assert ByProjection(rule).many(profiles) == [True, False, False, False, True, False, True]


def test_a_context_that_decides_the_context_part_still_needs_the_profile_part() -> None:
    """``country`` is in some contexts (they decide it for everyone: evaluated once per context)
    and not in others (the profile's country then counts, per pair); ``age`` is read from the
    profile alone. Every request answers as the rule on its merged features."""
    rule = parse('age > 30 and country = "US" and device = "tv"')
    contexts = [
        {"country": "US", "device": "tv"},
        {"country": "FR", "device": "tv"},
        {"device": "tv"},
        {"country": "US", "device": "phone"},
        {"country": "US"},
    ]
    store = MemoryProfileStore(
        {
            "old_us": {"age": 40, "country": "US"},
            "old_fr": {"age": 40, "country": "FR"},
            "young_us": {"age": 20, "country": "US"},
            "old_tv": {"age": 40, "country": "US", "device": "tv"},
        }
    )
    uids = [*store.profiles, "nobody"]
    rows = [(u, orjson.dumps(c).decode()) for u in uids for c in contexts]
    table = pa.table({"user_id": [u for u, _ in rows], "context": [c for _, c in rows]})
    reach = find_reach(line_item(1, rule), table, store)
    match = compile_rule(rule)
    for uid, text in rows:
        expected = match(merge_features(store.get(uid), orjson.loads(text)))
        assert reach.matches(uid, text) == expected, (uid, text)
    assert reach.users == {"old_us", "old_fr", "old_tv"}
    assert reach.by_context  # the first contexts were decided once each


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.integers(0, 12), max_size=40), contexts=st.lists(st.integers(0, 4)))
def test_users_hashed_in_halves_are_in_order_of_first_request(ids, contexts) -> None:
    """Hashing the two halves apart and unifying gives what one pass gives: each distinct user
    once, in order of first request, and every row's user as its position."""
    table = pa.table(
        {
            "user_id": pa.array([f"u{i}" for i in ids], pa.string()),
            "context": pa.array(
                [
                    orjson.dumps(CONTEXTS[contexts[i % len(contexts)] if contexts else 0]).decode()
                    for i in range(len(ids))
                ],  # fmt: skip
                pa.string(),
            ),
        }
    )
    got = sampled(table)
    assert got.users == list(dict.fromkeys(f"u{i}" for i in ids))
    assert [got.users[p] for p in got.positions.to_pylist()] == [f"u{i}" for i in ids]
    assert got.contexts == {
        text: orjson.loads(text) for text in table.column("context").to_pylist()
    }
