"""Every CounterStore counts and expires the same way (memory, SQLite, real Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adtarget.decision.counters import (
    CounterStore,
    MemoryCounters,
    RedisCounters,
    SqliteCounters,
    cap_key,
)
from adtarget.decision.models import FrequencyCap


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounters()
    elif request.param == "sqlite":
        s = SqliteCounters(tmp_path / "caps.sqlite3")
        yield s
        s.close()
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        r = RedisCounters(url, prefix=prefix, timeout=1.0)
        yield r
        keys = r._client.keys(prefix + "*")
        if keys:
            r._client.delete(*keys)
        r.close()


NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a multiple of 3600


def test_counts_start_at_zero_and_increment(store: CounterStore) -> None:
    assert store.counts(["a", "b"], NOW) == [0, 0]
    store.record(["a", "b"], NOW, 3600)
    store.record(["a"], NOW + 1, 3600)
    assert store.counts(["a", "b", "c"], NOW + 2) == [2, 1, 0]
    assert store.counts([], NOW) == []


def test_duplicate_keys_in_one_record_count_twice(store: CounterStore) -> None:
    store.record(["k", "k"], NOW, 60)
    assert store.counts(["k"], NOW) == [2]


def test_fixed_window_key_rolls_over(store: CounterStore) -> None:
    cap = FrequencyCap("line_item", 7, 2, 3600)
    k1 = cap_key(cap, "u1", NOW + 10)
    assert k1 == cap_key(cap, "u1", NOW + 3599)
    store.record([k1], NOW + 10, 3600)
    k2 = cap_key(cap, "u1", NOW + 3600)
    assert k2 != k1
    assert store.counts([k1, k2], NOW + 20) == [1, 0]  # the next window starts from zero


def test_release_gives_one_back_never_below_zero(store: CounterStore) -> None:
    store.record(["r", "r", "s"], NOW, 3600)
    store.release(["r", "s"], NOW + 1)
    assert store.counts(["r", "s"], NOW + 1) == [1, 0]
    store.release(["s", "never"], NOW + 1)  # nothing to give back: stays at zero
    assert store.counts(["s", "never"], NOW + 2) == [0, 0]
    store.release([], NOW)
    assert store.record(["s"], NOW + 3, 3600) == [1]


def test_release_of_an_expired_key_does_not_revive_it(store: CounterStore) -> None:
    store.record(["x"], NOW, 60)
    store.release(["x"], NOW + 61)
    assert store.counts(["x"], NOW + 62) == [0]
    assert store.record(["x"], NOW + 62, 60) == [1]


def test_memory_and_sqlite_expire_at_window_end(tmp_path: Path) -> None:
    for s in (MemoryCounters(), SqliteCounters(tmp_path / "x.sqlite3")):
        s.record(["e"], NOW + 5, 60)
        assert s.counts(["e"], NOW + 59) == [1]
        assert s.counts(["e"], NOW + 60) == [0]
        s.record(["e"], NOW + 61, 60)  # an expired row restarts at 1
        assert s.counts(["e"], NOW + 61) == [1]


def test_sqlite_counters_are_shared_between_connections(tmp_path: Path) -> None:
    a = SqliteCounters(tmp_path / "shared.sqlite3")
    b = SqliteCounters(tmp_path / "shared.sqlite3")
    a.record(["x"], NOW, 60)
    b.record(["x"], NOW, 60)
    assert a.counts(["x"], NOW) == [2]
    a.close()
    b.close()


def test_redis_counter_keys_expire(redis_url: str, redis_prefix: str) -> None:
    r = RedisCounters(redis_url, prefix=redis_prefix, timeout=1.0)
    r.record(["ttl"], NOW + 30, 60)
    ttl = r._client.ttl(redis_prefix + "ttl")
    assert 0 < ttl <= 32
    r._client.delete(redis_prefix + "ttl")
    r.close()


def test_sqlite_user_counts_reads_exactly_one_users_live_counters(tmp_path: Path) -> None:
    store = SqliteCounters(tmp_path / "caps.sqlite3")
    hour, minute = FrequencyCap("line_item", 7, 2, 3600), FrequencyCap("campaign", 3, 1, 60)
    mine = [cap_key(hour, "u1", NOW), cap_key(minute, "u1", NOW)]
    store.record(mine, NOW, 60)  # both keys expire with the minute window
    store.record([mine[0]], NOW, 3600)  # the hourly key now lives the hour
    # neighbours in key order: u10 and u1x share the "u1" prefix but are other users
    store.record([cap_key(hour, "u10", NOW), cap_key(hour, "u1x", NOW), "u1:untagged"], NOW, 3600)
    assert store.user_counts("u1", NOW + 1) == {mine[0]: 2, mine[1]: 1}
    assert store.user_counts("u1", NOW + 61) == {mine[0]: 2}  # the minute's counter expired
    assert store.user_counts("u2", NOW) == {}
    assert store.counts(mine, NOW + 1) == [2, 1]  # the same figures as the per-key read
    store.close()
