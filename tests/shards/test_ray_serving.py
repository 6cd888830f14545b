"""Serving a sharded audience through Ray actors on a 3-node cluster: same answers as one
snapshot, spread over nodes, loopback only, and a node lost mid-stream gives exact answers or
``shard_unavailable`` — never a partial count — then exact answers again."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.audience.conftest import build, population, to_batch
from tests.audience.test_sharded import build_sharded
from tests.rules.strategies import REGISTRY, RULES
from tests.shards.conftest import RayCluster, non_loopback_connections

from adtarget.api.app import create_app
from adtarget.api.deps import app_snapshot_store
from adtarget.audience.fanout import Fanout, LocalFanout
from adtarget.audience.ray_fanout import RayFanout
from adtarget.audience.service import export_rule, overlap_rules, size_rule
from adtarget.audience.shard_build import ShardedBuilder
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.sharded_live import LiveShardedSnapshot
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import SnapshotStore
from adtarget.errors import ShardUnavailable
from adtarget.rules.ast import Rule
from adtarget.rules.parse import parse
from adtarget.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow
SHARDS = 4


@pytest.fixture(scope="module")
def served(
    ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Snapshot, ShardedSnapshot, SnapshotStore]]:
    users = population(900, seed=23)
    one = build(SnapshotStore(tmp_path_factory.mktemp("one")), users)

    def fanout(snap: ShardedSnapshot) -> Fanout:
        return RayFanout(snap, address=ray_cluster.address, deadline_s=5.0)

    store = SnapshotStore(tmp_path_factory.mktemp("many"), fanout_factory=fanout)
    many = build_sharded(store, users, SHARDS)
    assert isinstance(many, ShardedSnapshot)
    yield one, many, store
    fan = many.fanout
    assert isinstance(fan, RayFanout)
    fan.retire()


def test_actors_spread_over_nodes_on_loopback(
    ray_cluster: RayCluster, served: tuple[Snapshot, ShardedSnapshot, SnapshotStore]
) -> None:
    _, many, _ = served
    fan = many.fanout
    assert isinstance(fan, RayFanout)
    assert ray_cluster.alive_nodes() == 3
    assert len(set(fan.nodes())) == 3  # 4 shards on 3 nodes: every node holds one or two
    assert len(fan.actors) == 3  # one host per node: three calls per answer, not four
    assert sorted(k for shards in fan.assignment for k in shards) == list(range(SHARDS))
    assert non_loopback_connections() == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=RULES, more=st.lists(RULES, min_size=1, max_size=3))
def test_sizes_and_overlaps_equal_single_process(
    served: tuple[Snapshot, ShardedSnapshot, SnapshotStore], rule: Rule, more: list[Rule]
) -> None:
    one, many, _ = served
    a = size_rule(snapshot=one, rule_text=rule, min_size=0)
    b = size_rule(snapshot=many, rule_text=rule, min_size=0)
    assert b["count"] == a["count"] and b["shards"] == SHARDS
    rules = [rule, *more]
    assert (
        overlap_rules(snapshot=many, rules=rules, min_size=0)["matrix"]
        == overlap_rules(snapshot=one, rules=rules, min_size=0)["matrix"]
    )


def test_export_streams_every_shard(
    served: tuple[Snapshot, ShardedSnapshot, SnapshotStore], tmp_path: Path
) -> None:
    one, many, _ = served
    rule = 'not country = "US"'
    a = export_rule(snapshot=one, rule_text=rule, out_path=tmp_path / "a.csv", min_size=0)
    b = export_rule(
        snapshot=many, rule_text=rule, out_path=tmp_path / "b.csv", min_size=0, chunk_size=64
    )
    assert a["count"] == b["count"] > 300
    ids_a = pacsv.read_csv(tmp_path / "a.csv").column("user_id").to_pylist()
    ids_b = pacsv.read_csv(tmp_path / "b.csv").column("user_id").to_pylist()
    assert sorted(ids_a) == sorted(ids_b)


def test_http_answers_through_ray_and_hosts_follow_updates(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """``ADTARGET_AUDIENCE_BACKEND=ray``: the served API sums shard hosts, says ``shards``,
    and real-time profile updates are counted by the hosts themselves (they follow the log)."""
    cfg = Settings(
        data_dir=tmp_path / "data",
        actor="tester",
        audience_backend="ray",
        ray_address=ray_cluster.address,
        shard_deadline_ms=20_000,  # a loaded CI box: a first export past 2 s is slow, not lost
    )
    users = population(400, seed=8)
    one = build(SnapshotStore(tmp_path / "one"), users)
    build_sharded(SnapshotStore(cfg.snapshots_dir), users, 3)
    app = create_app(cfg)
    rule = "premium = true"
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/audiences/size", json={"rule": rule})
        assert r.status_code == 200, r.text
        want = size_rule(snapshot=one, rule_text=rule)["count"]
        assert r.json() == {"count": want, "snapshot": "v000001", "shards": 3}
        r = client.post("/v1/audiences/overlap", json={"rules": [rule, "age < 30"]})
        assert r.status_code == 200 and r.json()["shards"] == 3
        r = client.post("/v1/audiences/export", json={"rule": rule})
        assert r.status_code == 200 and r.headers["X-Adtarget-Count"] == str(want)

        flip = [u["user_id"] for u in users if u.get("premium") is False][:6]
        body = [
            {"update_id": f"p{i}", "user_id": uid, "set": {"premium": True}}
            for i, uid in enumerate(flip)
        ]
        body.append({"update_id": "n1", "user_id": "new-user-1", "set": {"premium": True}})
        r = client.post("/v1/profiles/updates", json={"updates": body})
        assert r.status_code == 200 and r.json()["accepted"] == 7, r.text
        r = client.post("/v1/audiences/size", json={"rule": rule})
        assert r.status_code == 200 and r.json()["count"] == want + 7, r.text
        live = app_snapshot_store(app).current()
        assert isinstance(live, LiveShardedSnapshot) and live.updates_seq >= 7
        hosts = live.base.fanout
        assert isinstance(hosts, RayFanout) and not isinstance(live.fanout, LocalFanout)
        compiled = parse(rule)
        # asked directly: the hosts themselves count the updates (as of the asker's sequence)
        assert hosts.count(compiled, use_cache=False, seq=live.updates_seq) == want + 7
        r = client.post("/v1/audiences/export", json={"rule": rule})
        assert r.headers["X-Adtarget-Count"] == str(want + 7) and b"new-user-1" in r.content
    assert non_loopback_connections() == []
    hosts.retire()


def test_node_loss_gives_exact_or_shard_unavailable_then_recovers(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    users = population(600, seed=31)
    one = build(SnapshotStore(tmp_path / "one"), users)

    def fanout(snap: ShardedSnapshot) -> Fanout:
        return RayFanout(snap, address=ray_cluster.address, deadline_s=1.0)

    store = SnapshotStore(tmp_path / "many", fanout_factory=fanout)
    many = build_sharded(store, users, SHARDS)
    assert isinstance(many, ShardedSnapshot)
    rule = 'country in ("US", "CA") or premium = true'
    want = size_rule(snapshot=one, rule_text=rule, min_size=0)["count"]
    fan = many.fanout
    assert isinstance(fan, RayFanout)
    nodes = fan.nodes()
    victim_id = next(n for n in nodes if n != ray_cluster.cluster.head_node.node_id)
    victim = next(w for w in ray_cluster.workers if w.node_id == victim_id)

    answers: list[Any] = []
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            try:
                answers.append(size_rule(snapshot=many, rule_text=rule, min_size=0)["count"])
            except ShardUnavailable as exc:
                answers.append(exc)
            time.sleep(0.02)

    worker = threading.Thread(target=stream)
    worker.start()
    time.sleep(0.5)
    before = len(answers)
    ray_cluster.remove_worker(victim)  # the node and every actor on it die
    deadline = time.monotonic() + 60
    recovered = False
    while time.monotonic() < deadline:
        time.sleep(0.5)
        tail = answers[-5:]
        if len(answers) > before + 10 and tail and all(a == want for a in tail):
            recovered = True
            break
    stop.set()
    worker.join()
    try:
        assert before > 0 and recovered, answers[-10:]
        for a in answers:  # exact, or a named shard: never a partial count
            named = isinstance(a, ShardUnavailable) and a.field == "shard" and "shard" in a.details
            assert a == want or named, a
        assert victim_id not in fan.nodes()  # the restarted actors run elsewhere
        assert non_loopback_connections() == []
    finally:
        ray_cluster.add_worker()  # later tests get three nodes again
        fan.retire()


def test_kept_answers_follow_segment_expiry(ray_cluster: RayCluster, tmp_path: Path) -> None:
    """Shard actors keep their answers per rule, but a segment membership that expires (no
    publish) changes the answer: the next size counts without the expired members."""

    def fanout(snap: ShardedSnapshot) -> Fanout:
        return RayFanout(snap, address=ray_cluster.address, deadline_s=5.0)

    users = population(300, seed=5)
    store = SnapshotStore(tmp_path / "many", fanout_factory=fanout)
    b = ShardedBuilder(store=store, base=None, registry=REGISTRY, shards=SHARDS, mode="replace")
    b.add_batch(to_batch(users))
    now = time.time()
    ttl = 20  # the actors start (seconds on a loaded box) and answer before it passes
    b.set_segment("soon", [u["user_id"] for u in users[:120]], ttl_seconds=ttl, now=now)
    store.publish(b.finish())
    snap = store.current()
    assert isinstance(snap, ShardedSnapshot)
    rule, segs = 'segment("soon")', {"soon": None}
    assert isinstance(snap.fanout, RayFanout)  # the actors are up
    for _ in range(3):  # asked again: answered from what the actors kept
        assert size_rule(snapshot=snap, rule_text=rule, min_size=0, segments=segs)["count"] == 120
    assert time.time() < now + ttl, "the actors took longer to answer than the TTL"
    time.sleep(max(0.0, math.ceil(now + ttl) - time.time()) + 0.2)
    assert size_rule(snapshot=snap, rule_text=rule, min_size=0, segments=segs)["count"] == 0
    snap.fanout.retire()


def test_processes_share_one_set_of_hosts_retired_after_a_switch(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """``serve --workers N`` on many processes or nodes: every process serving a version gets
    the same hosts (one copy of the shards, not N), and once a newer version is current the
    old version's hosts stop by themselves."""

    def fanout(snap: ShardedSnapshot) -> Fanout:
        return RayFanout(snap, address=ray_cluster.address, deadline_s=5.0, retire_s=1.0)

    store = SnapshotStore(tmp_path / "many", fanout_factory=fanout)
    first = build_sharded(store, population(300, seed=3), SHARDS)
    assert isinstance(first, ShardedSnapshot)
    fan = first.fanout
    assert isinstance(fan, RayFanout)
    other = (
        "import json, sys\n"
        "from adtarget.audience.ray_fanout import RayFanout\n"
        "from adtarget.audience.sharded import ShardedSnapshot\n"
        "f = RayFanout(ShardedSnapshot(sys.argv[1]), address=sys.argv[2], deadline_s=30)\n"
        "print(json.dumps([a._actor_id.hex() for a in f.actors]))\n"
    )
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", other, str(first.path), ray_cluster.address],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert theirs == [a._actor_id.hex() for a in fan.actors]
    assert ray_cluster.shard_sets().count(fan.name) == 1
    named = [n for n in ray_cluster.ray.util.list_named_actors() if n.startswith(fan.name)]
    assert len(named) == 1 + len(fan.actors)  # the keeper and one host per node, once

    second = build_sharded(store, population(200, seed=4), SHARDS)
    assert isinstance(second, ShardedSnapshot)
    newer = second.fanout
    assert isinstance(newer, RayFanout)
    assert size_rule(snapshot=second, rule_text="premium = true", min_size=0)["shards"] == SHARDS
    deadline = time.monotonic() + 60
    while fan.name in ray_cluster.shard_sets() and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        assert fan.name not in ray_cluster.shard_sets()  # retired: not current for 1 s
        assert newer.name in ray_cluster.shard_sets()
    finally:
        newer.retire()
        fan.retire()
