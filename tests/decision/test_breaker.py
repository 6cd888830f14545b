"""CircuitBreaker: opens after consecutive failures, fails fast, probes once, recovers."""

from __future__ import annotations

import pytest

from adtarget.decision.breaker import CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _boom() -> int:
    raise ConnectionError("down")


def test_opens_after_threshold_then_fails_fast_then_recovers() -> None:
    clock = Clock()
    b = CircuitBreaker("redis", failure_threshold=2, cooldown_s=5.0, clock=clock)
    calls: list[int] = []

    def ok() -> int:
        calls.append(1)
        return 7

    with pytest.raises(ConnectionError):
        b.call(_boom)
    assert b.state == "closed"
    with pytest.raises(ConnectionError):
        b.call(_boom)
    assert b.state == "open"
    with pytest.raises(CircuitOpen):
        b.call(ok)
    assert calls == []  # the store is not called while open
    clock.t = 5.0
    assert b.state == "half_open"
    with pytest.raises(ConnectionError):
        b.call(_boom)  # the probe fails: open again for a full cool-down
    assert b.state == "open"
    clock.t = 9.0
    with pytest.raises(CircuitOpen):
        b.call(ok)
    clock.t = 10.0
    assert b.call(ok) == 7
    assert b.state == "closed"
    assert calls == [1]


def test_success_resets_the_failure_count() -> None:
    b = CircuitBreaker("x", failure_threshold=2, clock=Clock())
    with pytest.raises(ConnectionError):
        b.call(_boom)
    assert b.call(lambda: 1) == 1
    with pytest.raises(ConnectionError):
        b.call(_boom)
    assert b.state == "closed"
