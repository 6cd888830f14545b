"""``find_reach`` (profile part per user, context part per pair) equals evaluating every request."""

from __future__ import annotations

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.decision.strategies import line_item, rules, users

from adtarget.decision.forecast_reach import find_reach
from adtarget.decision.profiles import MemoryProfileStore, merge_features
from adtarget.rules.eval_python import compile_rule

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
