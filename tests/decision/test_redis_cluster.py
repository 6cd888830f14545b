"""Profiles and frequency caps on a real Redis Cluster (3 masters + 3 replicas, started by the
``redis_cluster`` fixture): the same answers as a single Redis, one dead master degrading only
its users until its replica takes over, and a cap held across two decision processes.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from adtarget.audience.redis_profiles import load_profiles_into_redis, open_client, user_key
from adtarget.decision.counters import RedisCounters, cap_key
from adtarget.decision.engine import DecisionEngine, StaticIndex
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import DecisionRequest, FrequencyCap, LiveLineItem
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.decision.redis_client import connect, node_of
from adtarget.rules.parse import parse

from .redis_cluster import LocalRedisCluster
from .strategies import line_item

pytestmark = pytest.mark.redis

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
USERS = {
    f"u{i}": {"country": ("US", "CA", "DE")[i % 3], "age": 18 + i % 40, "kids": i % 4 == 0}
    for i in range(60)
}


def _items() -> list[LiveLineItem]:
    return [
        line_item(
            1, parse('country = "US"'), priority=1, caps=(FrequencyCap("line_item", 1, 2, 3600),)
        ),
        line_item(2, parse("age >= 30"), priority=2, caps=(FrequencyCap("campaign", 1, 3, 3600),)),
        line_item(3, parse('country in ("CA", "DE") and kids = false'), priority=3),
        line_item(
            4, parse('device = "tv"'), priority=4, caps=(FrequencyCap("line_item", 4, 1, 60),)
        ),
    ]


def _engine(url: str, prefix: str, *, cluster: bool | None = None, **kw: Any) -> DecisionEngine:
    """Wired as ``DecisionEngine.from_settings`` does: the profile store reads each user's
    counters with the profile (one round trip)."""
    counters = RedisCounters(url, prefix=prefix + "c:", timeout=0.2, cluster=cluster)
    return DecisionEngine(
        index_holder=StaticIndex(LineItemIndex(_items())),
        profiles=RedisProfileStore(
            url, prefix=prefix + "p:", timeout=0.2, cluster=cluster, counters=counters
        ),
        counters=counters,
        clock=lambda: NOW,
        **kw,
    )


def _load(url: str, prefix: str) -> None:
    client = open_client(url)
    try:
        load_profiles_into_redis(USERS.items(), client, version="v000001", prefix=prefix + "p:")
    finally:
        client.close()


def _answers(engine: DecisionEngine, rounds: int = 4) -> list[tuple[Any, ...]]:
    out = []
    for _ in range(rounds):
        for user in sorted(USERS):
            res = engine.decide(DecisionRequest(user, {"device": "tv"}, limit=3))
            out.append((user, [d.line_item_id for d in res.decisions], res.snapshot, res.degraded))
    return out


def test_cluster_is_detected_and_keys_of_a_user_share_a_node(
    redis_cluster: LocalRedisCluster, redis_url: str
) -> None:
    client = connect(redis_cluster.url, timeout=0.5)
    single = connect(redis_url, timeout=0.5)
    try:
        assert type(client).__name__ == "RedisCluster"
        assert type(single).__name__ == "Redis"
        cap = FrequencyCap("campaign", 7, 3, 3600)
        for user in ("u1", "a:b", "x}y"):
            profile = node_of(client, "pfx:" + user_key("p:", "v1", user))
            assert profile == node_of(client, "pfx:" + cap_key(cap, user, 1e9))
        nodes = {node_of(client, user_key("p:", "v1", u)) for u in USERS}
        assert len(nodes) == 3  # users spread over every master
        assert node_of(single, "anything") == ""
    finally:
        client.close()
        single.close()


def test_decisions_and_caps_equal_single_redis(
    redis_cluster: LocalRedisCluster, redis_url: str, redis_prefix: str
) -> None:
    _load(redis_cluster.url, redis_prefix)
    _load(redis_url, redis_prefix)
    on_cluster = _engine(redis_cluster.url, redis_prefix)
    on_single = _engine(redis_url, redis_prefix)
    try:
        got = _answers(on_cluster)
        assert got == _answers(on_single)
        assert not any(degraded for *_, degraded in got)
        served = [ids for _, ids, _, _ in got]
        assert sum(1 in ids for ids in served) == 2 * sum(
            u["country"] == "US" for u in USERS.values()
        )  # line item 1: exactly its cap of 2 per US user
        assert on_cluster.status()["profiles"] == "closed"
        ids = [*sorted(USERS), "nobody"]  # a batch read spans every master
        many = on_cluster.profiles.get_many(ids)  # type: ignore[attr-defined]
        assert many == [on_single.profiles.get(u) for u in ids] and many[-1] is None
        assert sum(p is not None for p in many) == len(USERS)
    finally:
        on_cluster.close()
        on_single.close()


def test_forced_mode_matches_detection(redis_cluster: LocalRedisCluster, redis_prefix: str) -> None:
    store = RedisProfileStore(redis_cluster.url, prefix=redis_prefix + "p:", cluster=True)
    try:
        assert type(store._client).__name__ == "RedisCluster"
    finally:
        store.close()


RACE_CAPS = (FrequencyCap("line_item", 9, 25, 3600), FrequencyCap("advertiser", 1, 1000, 3600))


def _serve(url: str, prefix: str, user: str, start: Any, results: Any) -> None:
    counters = RedisCounters(url, prefix=prefix + "c:", timeout=0.5)
    engine = DecisionEngine(
        index_holder=StaticIndex(LineItemIndex([line_item(9, None, caps=RACE_CAPS)])),
        profiles=RedisProfileStore(url, prefix=prefix + "p:", timeout=0.5, counters=counters),
        counters=counters,
    )
    start.wait(timeout=60)  # both engines built: they race from the first request
    served = 0
    for _ in range(60):
        served += len(engine.decide(DecisionRequest(user, {}, limit=1)).decisions)
    results.put(served)
    engine.close()


def test_cap_never_exceeded_across_two_processes(
    redis_cluster: LocalRedisCluster, redis_prefix: str
) -> None:
    _load(redis_cluster.url, redis_prefix)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_serve, args=(redis_cluster.url, redis_prefix, "u7", start, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    totals = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert sum(totals) == 25  # the cap, never more, and no slot left unused
    # the increments of answers withdrawn after losing the race were given back: the
    # advertiser's cap counts exactly the 25 impressions served, not the 120 attempts
    counters = RedisCounters(redis_cluster.url, prefix=redis_prefix + "c:", timeout=0.5)
    try:
        now = time.time()
        keys = [cap_key(c, "u7", now) for c in RACE_CAPS]
        assert counters.counts(keys, now) == [25, 25]
    finally:
        counters.close()


def test_dead_master_degrades_only_its_users_until_failover(
    own_cluster: LocalRedisCluster,
) -> None:
    prefix = "t:"
    _load(own_cluster.url, prefix)
    engine = _engine(own_cluster.url, prefix, failure_threshold=2, cooldown_s=0.5)
    try:
        before = {u: engine.decide(DecisionRequest(u, {"device": "tv"}, limit=3)) for u in USERS}
        assert not any(r.degraded for r in before.values())
        victim = own_cluster.master_of(user_key(prefix + "p:", "v000001", "u0"))
        on_victim = {
            u
            for u in USERS
            if own_cluster.master_of(user_key(prefix + "p:", "v000001", u)) == victim
        }
        own_cluster.kill(victim)
        answers = {u: engine.decide(DecisionRequest(u, {"device": "tv"}, limit=3)) for u in USERS}
        for user, res in answers.items():
            if user in on_victim:
                assert res.degraded
                # context only: nothing reading a profile dimension may match
                assert {d.line_item_id for d in res.decisions} <= {4}
            else:
                assert not res.degraded, user
        assert engine.status()["profiles"] == "partial"
        deadline = time.monotonic() + 30
        recovered = False
        while time.monotonic() < deadline and not recovered:
            time.sleep(0.5)
            again = [engine.decide(DecisionRequest(u, {}, limit=3)) for u in sorted(on_victim)]
            recovered = not any(r.degraded for r in again)
        assert recovered, "users of the dead master still degraded after the replica took over"
        for user in sorted(USERS):
            res = engine.decide(DecisionRequest(user, {}, limit=3))
            assert not res.degraded and res.snapshot == "v000001"
    finally:
        engine.close()


def test_slot_migration_is_ridden_through(own_cluster: LocalRedisCluster) -> None:
    """A user's slot moves to another master between two of their requests: the engine's
    connections still point at the old node, get ``MOVED``, and the answer comes from the new
    one — not degraded, and the caps count on across the move."""
    prefix = "m:"
    _load(own_cluster.url, prefix)
    engine = _engine(own_cluster.url, prefix)
    user = "u0"  # US, 18, kids: line items 1 (cap 2 per hour) and 4 (cap 1 per minute) match
    try:
        served = [engine.decide(DecisionRequest(user, {"device": "tv"}, limit=3))]
        key = user_key(prefix + "p:", "v000001", user)
        source = own_cluster.master_of(key)
        own_cluster.migrate_slot(key, next(p for p in own_cluster.master_ports() if p != source))
        assert own_cluster.master_of(key) != source
        served += [
            engine.decide(DecisionRequest(user, {"device": "tv"}, limit=3)) for _ in range(4)
        ]
        assert not any(r.degraded for r in served)
        ids = [d.line_item_id for r in served for d in r.decisions]
        assert ids.count(1) == 2 and ids.count(4) == 1  # each cap exactly, across the move
        assert engine.status()["profiles"] == "closed"
    finally:
        engine.close()
