"""Sub-expression results on the live audience: kept across calls, dropped by an update."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.audience.conftest import build, population
from tests.rules.strategies import REGISTRY

from adtarget.audience.live import LiveSnapshot, forget_followers
from adtarget.audience.service import overlap_rules, size_rule
from adtarget.audience.stores import live_follower, snapshot_store_for
from adtarget.ingest.updates import accept_updates
from adtarget.settings import Settings

RULE = 'country = "US" and premium = true and not genres has any ("news")'


def _matches(u: dict[str, object]) -> bool:
    genres = u.get("genres") or frozenset()
    return u.get("country") == "US" and u.get("premium") is True and "news" not in genres  # type: ignore[operator]


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
