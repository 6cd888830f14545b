"""The event loop's read of a user (``decision/redis_async.py``) on a real Redis and a real
Redis Cluster (3 + 3): the same user as the engine's own read, batched per loop turn, the same
answers and caps through the decision route's ``_decide``; a dead master, a hung node and a
slot migration fall back to the engine's read (redis-py's redirects, retries, per-node
breakers) and degrade only the users of the failed node.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from typing import Any

import pytest

from adtarget.api.decision_service import DecisionService
from adtarget.api.routes.decisions import _decide
from adtarget.audience.redis_profiles import user_key
from adtarget.decision.engine import DecisionEngine
from adtarget.decision.models import DecisionRequest
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.decision.redis_async import AsyncUserReads

from .redis_cluster import LocalRedisCluster, free_ports
from .test_redis_cluster import USERS, _engine, _load

pytestmark = pytest.mark.redis

ASK = {"device": "tv"}


def _service(engine: DecisionEngine, timeout: float = 0.2) -> tuple[DecisionService, Any]:
    profiles = engine.profiles
    assert isinstance(profiles, RedisProfileStore)
    reads = AsyncUserReads(profiles, timeout=timeout)
    return DecisionService(engine, inline=True, reads=reads), reads


async def _route(service: DecisionService, user: str, context: Any = ASK) -> Any:
    """One decision as the HTTP route makes it (the loop's read, then ``decide``)."""
    return await _decide(service, DecisionRequest(user, context, limit=3), 1.0)


@pytest.fixture(params=["single", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "single":
        return str(request.getfixturevalue("redis_url"))
    return request.getfixturevalue("redis_cluster").url  # type: ignore[no-any-return]


def test_the_loop_reads_what_the_engine_reads_in_one_write_per_node(
    url: str, redis_prefix: str
) -> None:
    _load(url, redis_prefix)
    engine = _engine(url, redis_prefix)
    for user in list(USERS)[:20]:  # some counters to read back
        engine.decide(DecisionRequest(user, ASK, limit=3))
    service, reads = _service(engine)
    users = [*sorted(USERS), "nobody"]

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(*(reads.read(u) for u in users))

    async def twice() -> tuple[list[Any], list[Any], int]:
        first = await all_at_once()  # opens the connections
        writes = sum(c.writes for c in reads.connections())
        second = await all_at_once()  # one loop turn: one write per node
        return first, second, sum(c.writes for c in reads.connections()) - writes

    try:
        first, second, writes = asyncio.run(twice())
        expected = [engine.profiles.lookup_user(u) for u in users]  # type: ignore[attr-defined]
        assert first == expected and second == expected
        assert any(counts for _p, _v, counts in expected)  # counters were read, not only {}
        assert expected[-1][0] is None  # an unknown user: no features, the live version
        nodes = {
            engine.profiles.target(user_key(redis_prefix + "p:", "v000001", u))[0]  # type: ignore[attr-defined]
            for u in users
        }
        assert len(reads.connections()) == len(nodes)  # one per node: 1 single, 3 cluster
        assert writes == len(nodes)  # 61 users read in one loop turn: one write per node
    finally:
        reads.close()
        engine.close()


def test_route_answers_and_caps_equal_the_engines_own_read(
    redis_cluster: LocalRedisCluster, redis_prefix: str
) -> None:
    _load(redis_cluster.url, redis_prefix + "a:")
    _load(redis_cluster.url, redis_prefix + "b:")
    looped = _engine(redis_cluster.url, redis_prefix + "a:")
    blocking = _engine(redis_cluster.url, redis_prefix + "b:")
    service, reads = _service(looped)

    def answer(res: Any) -> tuple[Any, ...]:
        return [d.line_item_id for d in res.decisions], res.snapshot, res.degraded

    async def rounds() -> list[Any]:
        out = []
        for _ in range(4):  # caps fill up over the rounds: counters read back each time
            got = await asyncio.gather(*(_route(service, u) for u in sorted(USERS)))
            out.extend(answer(r) for r in got)
        return out

    try:
        on_loop = asyncio.run(rounds())
        engine_read = [
            answer(blocking.decide(DecisionRequest(u, ASK, limit=3)))
            for _ in range(4)
            for u in sorted(USERS)
        ]
        assert on_loop == engine_read
        assert not any(degraded for *_, degraded in on_loop)
        assert sum(c.writes for c in reads.connections()) >= 3  # the loop's path was taken
    finally:
        reads.close()
        looped.close()
        blocking.close()


def test_dead_master_degrades_only_its_users_on_the_loop_path(
    own_cluster: LocalRedisCluster,
) -> None:
    prefix = "d:"
    _load(own_cluster.url, prefix)
    engine = _engine(own_cluster.url, prefix, failure_threshold=2, cooldown_s=0.5)
    service, reads = _service(engine)
    victim = own_cluster.master_of(user_key(prefix + "p:", "v000001", "u0"))
    on_victim = {
        u for u in USERS if own_cluster.master_of(user_key(prefix + "p:", "v000001", u)) == victim
    }

    async def scenario() -> None:
        before = await asyncio.gather(*(_route(service, u) for u in sorted(USERS)))
        assert not any(r.degraded for r in before)
        own_cluster.kill(victim)
        answers = dict(
            zip(
                sorted(USERS),
                await asyncio.gather(*(_route(service, u) for u in sorted(USERS))),
                strict=True,
            )
        )
        for user, res in answers.items():
            if user in on_victim:
                assert res.degraded, user
                assert {d.line_item_id for d in res.decisions} <= {4}  # context-only rules
            else:
                assert not res.degraded, user
                assert await reads.read(user) is not None  # still read on the loop
        assert engine.status()["profiles"] == "partial"
        deadline = time.monotonic() + 30
        recovered = False
        while time.monotonic() < deadline and not recovered:
            await asyncio.sleep(0.5)
            again = [await _route(service, u, {}) for u in sorted(on_victim)]
            recovered = not any(r.degraded for r in again)
        assert recovered, "users of the dead master still degraded after the failover"
        # once redis-py has the new slot map, the promoted replica is read on the loop too
        assert all([await reads.read(u) is not None for u in sorted(on_victim)])
        for user in sorted(USERS):
            res = await _route(service, user, {})
            assert not res.degraded and res.snapshot == "v000001"

    try:
        asyncio.run(scenario())
    finally:
        reads.close()
        engine.close()


def test_slot_migration_is_ridden_through_on_the_loop_path(own_cluster: LocalRedisCluster) -> None:
    """``MOVED`` on the loop's read: the engine reads the user itself through redis-py (which
    follows the redirect and updates its slot map), and the next read is on the loop again,
    on the new node; caps count on across the move."""
    prefix = "m:"
    _load(own_cluster.url, prefix)
    engine = _engine(own_cluster.url, prefix)
    service, reads = _service(engine)
    user = "u0"  # US, 18, kids: line items 1 (cap 2 per hour) and 4 (cap 1 per minute) match

    async def scenario() -> list[Any]:
        served = [await _route(service, user)]
        key = user_key(prefix + "p:", "v000001", user)
        source = own_cluster.master_of(key)
        own_cluster.migrate_slot(key, next(p for p in own_cluster.master_ports() if p != source))
        assert own_cluster.master_of(key) != source
        assert await reads.read(user) is None  # MOVED: the loop's path steps aside
        served += [await _route(service, user) for _ in range(4)]
        assert await reads.read(user) is not None  # on the new node, with the new map
        return served

    try:
        served = asyncio.run(scenario())
        assert not any(r.degraded for r in served)
        ids = [d.line_item_id for r in served for d in r.decisions]
        assert ids.count(1) == 2 and ids.count(4) == 1  # each cap exactly, across the move
    finally:
        reads.close()
        engine.close()


def test_a_hung_node_times_out_then_serves_again(redis_prefix: str) -> None:
    """A Redis that stops answering (SIGSTOP): the loop's read gives up after the store
    timeout, the answer is degraded (never an error), and once Redis answers again the loop
    reads on a fresh connection."""
    port = free_ports(1)[0]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _load(url, redis_prefix)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        engine = _engine(url, redis_prefix, failure_threshold=2, cooldown_s=0.3)
        service, reads = _service(engine, timeout=0.05)

        async def scenario() -> None:
            assert await reads.read("u1") is not None
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                assert await reads.read("u1") is None
                assert time.monotonic() - started < 1.0  # the store timeout, not forever
                res = await _route(service, "u1")
                assert res.degraded
                assert {d.line_item_id for d in res.decisions} <= {4}
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            deadline = time.monotonic() + 10
            while (await _route(service, "u1")).degraded:
                assert time.monotonic() < deadline, "still degraded after Redis answered again"
                await asyncio.sleep(0.1)
            assert await reads.read("u1") is not None

        try:
            asyncio.run(scenario())
        finally:
            reads.close()
            engine.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
