"""A batch of users' features read a column at a time equals reading them one by one, on a
published snapshot and on the live audience (the snapshot with real-time updates over it)."""

from __future__ import annotations

import random
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as settings_h
from hypothesis import strategies as st
from tests.audience.conftest import build, population
from tests.audience.test_sharded import build_sharded
from tests.rules.strategies import POOLS, REGISTRY

from adtarget.audience.live import LiveSnapshot, forget_followers
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.sharded_live import LiveShardedSnapshot
from adtarget.audience.store import SnapshotStore
from adtarget.audience.stores import live_follower, snapshot_store_for
from adtarget.decision.profiles import PinnedProfiles
from adtarget.ingest.updates import accept_updates
from adtarget.settings import Settings

USERS = population(200, seed=5)
IDS = [u["user_id"] for u in USERS]


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


def test_a_sharded_snapshot_reads_a_batch_as_one_by_one(tmp_path: Path) -> None:
    snap = build_sharded(SnapshotStore(tmp_path / "snapshots"), USERS, 3)
    assert isinstance(snap, ShardedSnapshot)
    asked = _asked(random.Random(2))
    assert snap.features_many(asked) == [snap.features_of(u) for u in asked]
    assert snap.features_many([]) == []


def _update(rng: random.Random) -> dict[str, object]:
    n = uuid.uuid4().hex  # the data dir outlives one example: ids never repeat
    user = rng.choice([*IDS[:40], f"new-{rng.randrange(5)}"])  # some created by updates
    if rng.random() < 0.15:
        return {"update_id": f"up-{n}", "user_id": user, "delete": True}
    dims = rng.sample(list(POOLS), 2)
    value = rng.choice([v for v in POOLS[dims[0]] if v != ""])  # "" is not a value
    set_ = {dims[0]: [value] if REGISTRY[dims[0]].type == "set" else value}
    return {"update_id": f"up-{n}", "user_id": user, "set": set_, "unset": [dims[1]]}


@pytest.mark.parametrize("shards", [1, 3], ids=["one-snapshot", "3-shards"])
@settings_h(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), updates=st.integers(1, 40))
def test_the_live_audience_reads_a_batch_as_one_by_one(
    shards: int, seed: int, updates: int
) -> None:
    """After random updates (set, unset, delete, users created), in each example's own data
    dir: the batch read equals one by one."""
    forget_followers()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", actor="tester")
        settings.data_dir.mkdir(parents=True)
        store = snapshot_store_for(settings)
        if shards == 1:
            build(store, USERS)
        else:
            build_sharded(store, USERS, shards)
        rng = random.Random(seed)
        result = accept_updates(
            [_update(rng) for _ in range(updates)],
            registry=REGISTRY,
            follower=live_follower(settings),
        )
        assert result.accepted >= 1
        live = store.current()
        assert isinstance(live, LiveSnapshot if shards == 1 else LiveShardedSnapshot)
        asked = _asked(rng) + [f"new-{i}" for i in range(5)]
        assert live.features_many(asked) == [live.features_of(u) for u in asked]
        forget_followers()
