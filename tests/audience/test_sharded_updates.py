"""Real-time updates on sharded snapshots: routed to their user's shard, visible at once in
sizes, overlaps, exports and features, compacted shard by shard, and crash-safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pytest
from tests.audience.conftest import REGISTRY, population
from tests.audience.test_sharded import build_sharded

from adtarget.audience.compaction import compact
from adtarget.audience.fanout import LocalFanout
from adtarget.audience.live import forget_followers
from adtarget.audience.service import export_rule, overlap_rules, size_rule
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.sharded_live import LiveShardedSnapshot
from adtarget.audience.sharding import shard_name, shard_of
from adtarget.audience.store import COMPACTED_FROM, UPDATES_THROUGH
from adtarget.audience.stores import live_follower, snapshot_store_for
from adtarget.ingest.updates import accept_updates
from adtarget.settings import Settings

SHARDS = 3
N = 240


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    forget_followers()
    s = Settings(data_dir=tmp_path / "data", actor="tester", min_audience_size=0)
    s.data_dir.mkdir(parents=True)
    yield s
    forget_followers()


def _sharded(settings: Settings) -> ShardedSnapshot:
    users = population(N, seed=5)
    built = build_sharded(snapshot_store_for(settings), users, SHARDS)
    assert isinstance(built, ShardedSnapshot)
    return built


def _send(settings: Settings, updates: list[dict[str, Any]]) -> dict[str, Any]:
    snapshot_store_for(settings).current()  # this node serves the live audience
    result = accept_updates(updates, registry=REGISTRY, follower=live_follower(settings))
    return result.to_dict()


def _size(snap: Any, rule: str) -> int:
    return int(size_rule(snapshot=snap, rule_text=rule, registry=REGISTRY, min_size=0)["count"])


def test_updates_go_to_their_users_shard_and_show_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    _sharded(settings)
    store = snapshot_store_for(settings)
    before = _size(store.current(), "age >= 1000")
    users_before = store.current().num_users  # type: ignore[union-attr]
    ups = [
        {"update_id": f"a{i}", "user_id": f"user-{i:05d}", "set": {"age": 1000 + i}}
        for i in range(30)
    ]
    ups += [
        {"update_id": "n1", "user_id": "brand-new", "set": {"age": 5000, "genres": ["scifi"]}},
        {"update_id": "d1", "user_id": "user-00002", "delete": True},
    ]
    assert _send(settings, ups) == {"accepted": 32, "duplicates": 0, "rejected": []}
    live = store.current()
    assert isinstance(live, LiveShardedSnapshot)
    assert _size(live, "age >= 1000") == before + 30 + 1 - 1
    assert live.num_users == users_before + 1 - 1
    # each update sits in the delta of its own user's shard, nowhere else
    for uid in ["user-00005", "brand-new"]:
        k = shard_of(uid, SHARDS)
        for j, part in enumerate(live.delta.parts):
            has = part.ordinal_of(uid) is not None and part.ordinal_of(uid) in part.users
            assert has == (j == k), (uid, j)
    assert live.features_of("brand-new") == {
        "__segments__": frozenset(),
        "age": 5000,
        "genres": frozenset({"scifi"}),
    }
    assert live.features_of("user-00002") is None
    got = live.features_of("user-00007")
    assert got is not None and got["age"] == 1007
    matrix = overlap_rules(
        snapshot=live,
        rules=["age >= 1000", 'genres has any ("scifi")'],
        registry=REGISTRY,
        min_size=0,
    )["matrix"]
    assert matrix[0][0] == before + 30 and "brand-new" in _export(live, "age >= 5000", tmp_path)


def _export(snap: Any, rule: str, tmp_path: Path) -> set[str]:
    out = tmp_path / "ids.csv"
    export_rule(snapshot=snap, rule_text=rule, out_path=out, registry=REGISTRY, min_size=0)
    return set(pacsv.read_csv(out).column("user_id").to_pylist())


def test_compaction_rebuilds_only_touched_shards_and_keeps_sizes(settings: Settings) -> None:
    base = _sharded(settings)
    store = snapshot_store_for(settings)
    uid = "user-00011"
    k = shard_of(uid, SHARDS)
    assert (
        _send(settings, [{"update_id": "x1", "user_id": uid, "set": {"age": 777}}])["accepted"] == 1
    )
    rules = ["age = 777", 'country = "US" or premium = true', "not genres is missing"]
    live_sizes = [_size(store.current(), r) for r in rules]
    done = compact(store, live_follower(settings))
    assert done is not None and done["compacted_from"] == base.version and done["users"] == 1
    new = store.current_base()
    assert isinstance(new, ShardedSnapshot) and new.version == done["version"]
    assert (
        new.manifest[UPDATES_THROUGH] == done["through"]
        and new.manifest[COMPACTED_FROM] == base.version
    )
    assert [_size(store.current(), r) for r in rules] == live_sizes
    assert new.shard(k).features_of(uid)["age"] == 777  # type: ignore[index]  # in the base now
    for j in range(SHARDS):
        files = sorted(p.name for p in base.shard_path(j).iterdir() if p.is_file())
        same = all(
            os.stat(base.shard_path(j) / f).st_ino == os.stat(new.shard_path(j) / f).st_ino
            for f in files
            if (new.shard_path(j) / f).exists()
        )
        assert same == (j != k), j
    live = store.current()
    assert isinstance(live, LiveShardedSnapshot) and not any(p.users for p in live.delta.parts)


CHILD = """
import sys, time
from pathlib import Path
import adtarget.audience.compaction as c
from adtarget.audience.stores import live_follower, snapshot_store_for
from adtarget.settings import Settings

settings = Settings(data_dir=Path(sys.argv[1]), actor="tester")
real = c.write_manifest

def stall(staged, **kw):
    Path(sys.argv[2]).write_text(str(staged))
    time.sleep(60)

c.write_manifest = stall
c.compact(snapshot_store_for(settings), live_follower(settings))
"""


def test_compaction_killed_half_way_leaves_the_old_version_serving(settings: Settings) -> None:
    base = _sharded(settings)
    store = snapshot_store_for(settings)
    ups = [
        {"update_id": f"k{i}", "user_id": f"user-{i:05d}", "set": {"age": 900}} for i in range(20)
    ]
    _send(settings, ups)
    want = _size(store.current(), "age = 900")
    marker = settings.data_dir / "staged.txt"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(settings.data_dir), str(marker)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        give_up = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the compaction child died on its own"
            assert time.monotonic() < give_up
            time.sleep(0.05)
        staged = Path(marker.read_text())
        assert (staged / shard_name(0)).is_dir()  # shards written, top manifest not yet
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    forget_followers()  # a restart of this process too
    store = snapshot_store_for(settings)
    assert store.current_version() == base.version
    assert not staged.exists()  # opening the store removed the dead process's staging dir
    assert _size(store.current(), "age = 900") == want  # replayed from the log
    done = compact(store, live_follower(settings))
    assert done is not None and done["users"] == 20
    assert _size(store.current(), "age = 900") == want
    manifest = json.loads((store.root / done["version"] / "manifest.json").read_text())
    assert manifest[COMPACTED_FROM] == base.version


def test_a_base_fanout_like_ray_actors_never_hides_a_pending_update(settings: Settings) -> None:
    """Ray shard actors map the base shards; while updates are pending the live shards answer
    in process, and once compacted the base's own fan-out answers again (here a fan-out over
    the base shards, what each actor's ``ShardWork`` computes)."""
    _sharded(settings)
    made: list[ShardedSnapshot] = []

    def base_fanout(snap: ShardedSnapshot) -> LocalFanout:
        made.append(snap)
        return LocalFanout(BaseShards(snap))

    store = snapshot_store_for(settings)
    store.fanout_factory = base_fanout
    before = _size(store.current(), "age = 4242")
    assert made and before == 0
    _send(settings, [{"update_id": "r1", "user_id": "user-00001", "set": {"age": 4242}}])
    assert _size(store.current(), "age = 4242") == 1  # in process over the live shards
    compact(store, live_follower(settings))
    made.clear()
    assert _size(store.current(), "age = 4242") == 1  # the new base's fan-out, no delta left
    assert made, "the compacted version's own fan-out answered"


class BaseShards:
    """The base shards of a sharded snapshot, as a shard actor maps them."""

    def __init__(self, snap: ShardedSnapshot) -> None:
        self.snap = snap

    @property
    def shards(self) -> list[Any]:
        return [self.snap.shard(k) for k in range(self.snap.num_shards)]
