"""Degradation with Redis really down: context-only targeting, capped items held back, the
breaker opening, and recovery once Redis answers again. Uses nothing listening on port 1, and a
throwaway ``redis-server`` of our own (the shared one on 6379 is never touched).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adtarget.audience.redis_profiles import load_profiles_into_redis
from adtarget.decision.counters import RedisCounters
from adtarget.decision.engine import DecisionEngine, StaticIndex
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import DecisionRequest, FrequencyCap, LiveLineItem
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.rules.eval_python import compile_rule
from adtarget.rules.parse import parse

from .strategies import line_item, rules, users

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
PROFILE = {"country": "US", "age": 30, "genres": frozenset({"scifi"})}
CONTEXT = {"device": "tv"}
FULL = {**PROFILE, **CONTEXT}


def _items() -> list[LiveLineItem]:
    return [
        line_item(1, parse('country = "US" and age >= 18'), priority=1),
        line_item(
            2, parse('device = "tv"'), priority=2, caps=(FrequencyCap("line_item", 2, 5, 3600),)
        ),
        line_item(3, parse('device = "tv"'), priority=3),
        line_item(4, parse('country != "US"'), priority=1),
        line_item(5, parse("age is missing"), priority=1),
        line_item(6, parse('device = "tv" and not (genres has any ("kids"))'), priority=4),
    ]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _engine(url: str, prefix: str, clock: Clock) -> DecisionEngine:
    return DecisionEngine(
        index_holder=StaticIndex(LineItemIndex(_items())),
        profiles=RedisProfileStore(url, prefix=prefix + "p:", timeout=0.2),
        counters=RedisCounters(url, prefix=prefix + "c:", timeout=0.2),
        clock=lambda: NOW,
        failure_threshold=2,
        cooldown_s=30.0,
        breaker_clock=clock,
    )


def _decide(engine: DecisionEngine) -> tuple[list[int], bool]:
    result = engine.decide(DecisionRequest("u1", context=CONTEXT, limit=10))
    ids = [d.line_item_id for d in result.decisions]
    rules = {it.id: it.rule for it in _items()}
    for i in ids:  # never a match the rules do not allow for this user's real features
        rule = rules[i]
        assert rule is not None and compile_rule(rule)(FULL), i
    return ids, result.degraded


def test_nothing_listening_means_degraded_context_only_answers() -> None:
    clock = Clock()
    engine = _engine("redis://127.0.0.1:1/0", "x:", clock)
    for _ in range(3):
        ids, degraded = _decide(engine)
        assert degraded
        assert ids == [3]  # 2 is capped (counters down), 1/4/5/6 read profile dimensions
    assert engine.profile_breaker.state == "open"
    assert engine.counter_breaker.state == "open"
    explained = engine.decide(DecisionRequest("u1", context=CONTEXT, limit=10, explain=True))
    reasons = {e["line_item_id"]: e for e in explained.explain["not_served"]}  # type: ignore[index]
    assert reasons[2]["reason"] == "frequency_cap"
    assert reasons[2]["detail"] == "counters unavailable"
    assert reasons[1]["reason"] == "targeting" and "profile unavailable" in reasons[1]["detail"]
    assert reasons[4]["detail"] == "profile unavailable: rule reads country"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    for _ in range(100):
        try:
            if client.ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


@pytest.fixture
def own_redis() -> Iterator[dict[str, Any]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    port = _free_port()
    state: dict[str, Any] = {"port": port, "proc": _start_redis(port)}
    yield state
    state["proc"].kill()
    state["proc"].wait()


def _load(port: int, prefix: str) -> None:
    client = redis.Redis(port=port)
    load_profiles_into_redis([("u1", PROFILE)], client, prefix=prefix + "p:", version="v000042")
    client.close()


def test_redis_killed_mid_test_degrades_then_recovers(own_redis: dict[str, Any]) -> None:
    port, prefix, clock = own_redis["port"], "t:", Clock()
    _load(port, prefix)
    engine = _engine(f"redis://127.0.0.1:{port}/0", prefix, clock)
    assert _decide(engine) == ([1, 2, 3, 6], False)
    assert engine.decide(DecisionRequest("u1", context=CONTEXT)).snapshot == "v000042"

    own_redis["proc"].kill()
    own_redis["proc"].wait()
    for _ in range(3):
        assert _decide(engine) == ([3], True)
    assert engine.profile_breaker.state == "open"

    own_redis["proc"] = _start_redis(port)
    _load(port, prefix)
    assert _decide(engine) == ([3], True)  # still inside the cool-down: Redis not called
    clock.t = 31.0  # cool-down over: the next request probes and the breakers close
    assert _decide(engine) == ([1, 2, 3, 6], False)
    assert engine.profile_breaker.state == "closed"
    assert engine.counter_breaker.state == "closed"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rules(), min_size=1, max_size=8), users(), users())
def test_degraded_answers_never_match_what_the_rules_forbid(
    rule_list: list[Any], profile: dict[str, Any], context: dict[str, Any]
) -> None:
    items = [line_item(i, r) for i, r in enumerate(rule_list)]
    engine = DecisionEngine(
        index_holder=StaticIndex(LineItemIndex(items)),
        profiles=RedisProfileStore("redis://127.0.0.1:1/0", prefix="x:", timeout=0.05),
        counters=RedisCounters("redis://127.0.0.1:1/0", prefix="x:", timeout=0.05),
        clock=lambda: NOW,
    )
    result = engine.decide(DecisionRequest("u", context=context, limit=10))
    assert result.degraded
    real = {**profile, **context}  # what the user really looks like
    for d in result.decisions:
        rule = rule_list[d.line_item_id]
        assert rule is None or compile_rule(rule)(real)


def test_redis_frozen_times_out_into_degraded_answers_then_recovers(
    own_redis: dict[str, Any],
) -> None:
    """A *slow* store (SIGSTOP: connections accepted, nothing answered) behaves like a down one."""
    port, prefix, clock = own_redis["port"], "s:", Clock()
    _load(port, prefix)
    engine = _engine(f"redis://127.0.0.1:{port}/0", prefix, clock)
    assert _decide(engine) == ([1, 2, 3, 6], False)
    pid = own_redis["proc"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(3):
            assert _decide(engine) == ([3], True)  # each store call gives up after its timeout
        assert engine.profile_breaker.state == "open"
        assert engine.counter_breaker.state == "open"
    finally:
        os.kill(pid, signal.SIGCONT)
    clock.t = 31.0
    assert _decide(engine) == ([1, 2, 3, 6], False)
    assert engine.profile_breaker.state == "closed"
