"""Sub-expression results on the live audience: kept across calls, dropped by an update."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_h
from hypothesis import strategies as st
from tests.audience.conftest import build, population
from tests.rules.strategies import REGISTRY, RULES

from adtarget.audience.live import LiveSnapshot, forget_followers
from adtarget.audience.service import overlap_rules, size_rule
from adtarget.audience.stores import live_follower, snapshot_store_for
from adtarget.ingest.updates import accept_updates
from adtarget.rules.ast import Rule
from adtarget.rules.eval_python import compile_rule
from adtarget.rules.format import to_text
from adtarget.settings import Settings

RULE = 'country = "US" and premium = true and not genres has any ("news", "drama")'
"""Its last clause is a union (two stored bitmaps): a result kept across calls."""


def _matches(u: dict[str, object]) -> bool:
    genres = u.get("genres") or frozenset()
    return (
        u.get("country") == "US" and u.get("premium") is True and not {"news", "drama"} & genres  # type: ignore[operator]
    )


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings(data_dir=tmp_path / "data", actor="tester")
    s.data_dir.mkdir(parents=True)
    yield s
    forget_followers()


def _size(snap: object) -> int:
    got = size_rule(snapshot=snap, rule_text=RULE, registry=REGISTRY, min_size=0)  # type: ignore[arg-type]
    return int(got["count"])


def test_cached_size_then_update_changes_it(settings: Settings) -> None:
    store = snapshot_store_for(settings)
    users = population(400, seed=3)
    build(store, users)
    first = store.current()
    assert isinstance(first, LiveSnapshot)
    want = sum(1 for u in users if _matches(u))
    assert _size(first) == want

    # a second request gets the same handle (one per applied view, taken without a lock)
    second = store.current()
    assert second is first and second.results is first.results  # type: ignore[union-attr]
    hits = second.results.hits  # type: ignore[union-attr]
    assert _size(second) == want
    assert second.results.hits > hits  # type: ignore[union-attr]

    # an update makes one more user match: the kept results must not answer any more
    target = next(u for u in users if not _matches(u))
    result = accept_updates(
        [
            {
                "update_id": "up-1",
                "user_id": target["user_id"],
                "set": {"country": "US", "premium": True, "genres": ["scifi"]},
            }
        ],
        registry=REGISTRY,
        follower=live_follower(settings),
    )
    assert result.accepted == 1
    third = store.current()
    assert third.results is not first.results  # type: ignore[union-attr]
    assert _size(third) == want + 1
    # and a delete takes one away again, overlap included
    gone = next(u for u in users if _matches(u))
    accept_updates(
        [{"update_id": "up-2", "user_id": gone["user_id"], "delete": True}],
        registry=REGISTRY,
        follower=live_follower(settings),
    )
    fourth = store.current()
    assert _size(fourth) == want
    over = overlap_rules(
        snapshot=fourth,  # type: ignore[arg-type]
        rules=[RULE, 'country = "US"'],
        registry=REGISTRY,
        min_size=0,
    )
    assert over["matrix"][0][0] == want and over["matrix"][0][1] == want


@settings_h(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=st.lists(RULES, min_size=10, max_size=10))
def test_live_view_sizes_dense_until_an_update(
    tmp_path_factory: pytest.TempPathFactory, rules: list[Rule]
) -> None:
    """A live view with no user changed counts through the base's dense path (what the
    server reads); once an update lands it patches Roaring bitmaps. Same counts either way."""
    s = Settings(data_dir=tmp_path_factory.mktemp("live") / "data", actor="tester")
    s.data_dir.mkdir(parents=True)
    try:
        store = snapshot_store_for(s)
        users = population(700, seed=11)
        build(store, users)
        live = store.current()
        assert isinstance(live, LiveSnapshot)
        assert live.index.dense is not None and live.index.dense is live.base.index.dense
        _sizes_and_overlap_exact(live, users, rules)
        changed = dict(users[0], country="US", premium=True)
        accept_updates(
            [
                {
                    "update_id": "up-d",
                    "user_id": changed["user_id"],
                    "set": {"country": "US", "premium": True},
                }
            ],
            registry=REGISTRY,
            follower=live_follower(s),
        )
        after = store.current()
        assert isinstance(after, LiveSnapshot) and after.index.dense is None
        users[0] = changed
        _sizes_and_overlap_exact(after, users, rules)
    finally:
        forget_followers()


def _sizes_and_overlap_exact(
    snap: LiveSnapshot, users: list[dict[str, object]], rules: list[Rule]
) -> None:
    """Each rule's size and the overlap matrix equal the per-user evaluator's (cache off)."""
    members = [[compile_rule(r)(u) for u in users] for r in rules]
    for rule, m in zip(rules, members, strict=True):
        got = size_rule(snapshot=snap, rule_text=rule, min_size=0, use_cache=False)
        assert got["count"] == sum(m), to_text(rule)
    over = overlap_rules(snapshot=snap, rules=rules, min_size=0, use_cache=False)
    want = [[sum(x and y for x, y in zip(a, b, strict=True)) for b in members] for a in members]
    assert over["matrix"] == want
