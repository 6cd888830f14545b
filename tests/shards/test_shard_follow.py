"""A Ray shard host's follower of the update log, without Ray: only its own shards get deltas,
an answer waits for the asker's sequence number, and a log that cannot be read that far is a
``shard_unavailable`` naming one of its shards, never an answer that leaves updates out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from tests.audience.conftest import population
from tests.audience.test_sharded import build_sharded

from adtarget.audience.fanout import ShardWork
from adtarget.audience.live import encode
from adtarget.audience.shard_follow import ShardFollower
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.sharding import shard_of
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import SnapshotStore
from adtarget.audience.update_log import UpdateLog
from adtarget.errors import ShardUnavailable
from adtarget.rules.parse import parse

SHARDS = 3
RULE = parse("premium = true")


def count(shards: Sequence[Snapshot]) -> int:
    return sum(ShardWork(s).count(RULE) for s in shards)


def test_follows_only_its_shards_and_waits_for_the_askers_sequence(tmp_path: Path) -> None:
    users = population(300, seed=2)
    snap = build_sharded(SnapshotStore(tmp_path / "snaps"), users, SHARDS)
    assert isinstance(snap, ShardedSnapshot)
    log = UpdateLog(f"sqlite:///{tmp_path / 'updates.sqlite3'}")
    mine = [0, 2]
    follower = ShardFollower(snap, mine, log)
    with pytest.raises(ShardUnavailable) as err:
        follower.ensure(1)  # nothing logged yet: it cannot answer as of update 1
    assert err.value.field == "shard" and err.value.details["shard"] in mine

    flip = [u["user_id"] for u in users if u.get("premium") is False][:20]
    ours = [uid for uid in flip if shard_of(uid, SHARDS) in mine]
    assert 0 < len(ours) < len(flip)  # some of them live in the shard another host serves
    log.append([(f"u{i}", uid, encode({"set": {"premium": True}})) for i, uid in enumerate(flip)])
    before = count([snap.shard(k) for k in mine])
    assert count(follower.snapshots()) == before  # not asked for the updates yet
    follower.ensure(len(flip))
    assert follower.seq == len(flip) and set(follower.parts) == set(mine)
    assert count(follower.snapshots()) == before + len(ours)
    follower.stop()
    log.close()
