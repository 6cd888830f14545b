"""A batch of users' features read a column at a time equals reading them one by one, on a
published snapshot and on the live audience (the snapshot with real-time updates over it)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_h
from hypothesis import strategies as st
from tests.audience.conftest import build, population
from tests.rules.strategies import POOLS, REGISTRY

from adtarget.audience.live import LiveSnapshot, forget_followers
from adtarget.audience.store import SnapshotStore
from adtarget.audience.stores import live_follower, snapshot_store_for
from adtarget.decision.profiles import PinnedProfiles
from adtarget.ingest.updates import accept_updates
from adtarget.settings import Settings

USERS = population(200, seed=5)
IDS = [u["user_id"] for u in USERS]


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings(data_dir=tmp_path / "data", actor="tester")
    s.data_dir.mkdir(parents=True)
    yield s
    forget_followers()


def _asked(rng: random.Random) -> list[str]:
    """Known users in a random order, some twice, and ids nobody has."""
    asked = rng.sample(IDS, 120) + rng.sample(IDS, 10) + ["nobody", "user-99999", ""]
    rng.shuffle(asked)
    return asked


def test_a_snapshot_reads_a_batch_as_one_by_one(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    snap = build(store, USERS)
    asked = _asked(random.Random(1))
    assert snap.features_many(asked) == [snap.features_of(u) for u in asked]
    assert snap.features_many([]) == []
    assert PinnedProfiles(snap).get_many(asked) == [snap.features_of(u) for u in asked]


def _update(rng: random.Random) -> dict[str, object]:
    n = uuid.uuid4().hex  # the data dir outlives one example: ids never repeat
    user = rng.choice([*IDS[:40], f"new-{rng.randrange(5)}"])  # some created by updates
    if rng.random() < 0.15:
        return {"update_id": f"up-{n}", "user_id": user, "delete": True}
    dims = rng.sample(list(POOLS), 2)
    value = rng.choice([v for v in POOLS[dims[0]] if v != ""])  # "" is not a value
    set_ = {dims[0]: [value] if REGISTRY[dims[0]].type == "set" else value}
    return {"update_id": f"up-{n}", "user_id": user, "set": set_, "unset": [dims[1]]}


@settings_h(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), updates=st.integers(1, 40))
def test_the_live_audience_reads_a_batch_as_one_by_one(
    settings: Settings, seed: int, updates: int
) -> None:
    forget_followers()
    store = snapshot_store_for(settings)
    if store.current() is None:
        build(store, USERS)
    rng = random.Random(seed)
    result = accept_updates(
        [_update(rng) for _ in range(updates)],
        registry=REGISTRY,
        follower=live_follower(settings),
    )
    assert result.accepted >= 1
    live = store.current()
    assert isinstance(live, LiveSnapshot)
    asked = _asked(rng) + [f"new-{i}" for i in range(5)]
    assert live.features_many(asked) == [live.features_of(u) for u in asked]
