"""Profiles and counters read together: one round trip per decision on a real Redis.

``RedisProfileStore(counters=...)`` reads the user's profile and their counter hash at once
(``lookup_user``); the engine then needs no counter read of its own, and the caps hold exactly
as with separate reads. Scripts survive a flushed script cache (a restarted or promoted node).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest

from adtarget.audience.redis_profiles import load_profiles_into_redis, open_client
from adtarget.decision.counters import RedisCounters, cap_key, split_key
from adtarget.decision.engine import DecisionEngine, StaticIndex
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import DecisionRequest, FrequencyCap
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.rules.parse import parse

from .strategies import line_item

pytestmark = pytest.mark.redis

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
TS = NOW.timestamp()
CAP = FrequencyCap("line_item", 1, 3, 3600)


class CountingCounters(RedisCounters):
    """The real Redis store, counting the engine's own counter reads."""

    reads = 0

    def counts(self, keys: Sequence[str], now: float) -> list[int]:
        self.reads += 1
        return super().counts(keys, now)


@pytest.fixture
def stores(redis_url: str, redis_prefix: str) -> Iterator[tuple[RedisProfileStore, RedisCounters]]:
    client = open_client(redis_url)
    users = [("u1", {"country": "US", "genres": frozenset({"drama"})}), ("u2", {"country": "CA"})]
    load_profiles_into_redis(users, client, version="v000001", prefix=redis_prefix + "p:")
    client.close()
    counters = CountingCounters(redis_url, prefix=redis_prefix + "c:", timeout=1.0)
    profiles = RedisProfileStore(
        redis_url, prefix=redis_prefix + "p:", timeout=1.0, counters=counters
    )
    yield profiles, counters
    profiles.close()
    counters.close()


def test_split_key_gives_the_key_back() -> None:
    for key in (cap_key(CAP, "u1", TS), cap_key(CAP, "a}b", TS), "plain", "{}:x"):
        name, field = split_key(key)
        assert name + field == key
    assert split_key(cap_key(CAP, "u1", TS))[0] == "{u1}"


def test_lookup_user_reads_profile_and_every_counter(
    stores: tuple[RedisProfileStore, RedisCounters],
) -> None:
    profiles, counters = stores
    hourly = cap_key(CAP, "u1", TS)
    daily = cap_key(FrequencyCap("campaign", 7, 5, 86400), "u1", TS)
    counters.record([hourly, hourly], TS, 3600)
    counters.record([daily], TS, 86400)
    counters.record([cap_key(CAP, "u2", TS)], TS, 3600)  # another user's: not in u1's read
    profile, version, counts = profiles.lookup_user("u1")
    assert profile == {"country": "US", "genres": frozenset({"drama"})}
    assert version == "v000001"
    assert counts == {hourly: 2, daily: 1}
    assert counts[hourly] == counters.counts([hourly], TS)[0]
    assert profiles.lookup_user("nobody") == (None, "v000001", {})
    assert profiles.lookup("u1") == (profile, "v000001")


def test_engine_reads_no_counters_of_its_own_and_holds_the_cap(
    stores: tuple[RedisProfileStore, RedisCounters],
) -> None:
    profiles, counters = stores
    engine = DecisionEngine(
        index_holder=StaticIndex(
            LineItemIndex([line_item(1, parse('country = "US"'), caps=(CAP,))])
        ),
        profiles=profiles,
        counters=counters,
        clock=lambda: NOW,
    )
    served = [len(engine.decide(DecisionRequest("u1", {})).decisions) for _ in range(5)]
    assert served == [1, 1, 1, 0, 0]  # the cap of 3 per hour, read with the profile each time
    assert isinstance(counters, CountingCounters) and counters.reads == 0
    assert not engine.decide(DecisionRequest("u1", {})).degraded


def test_scripts_survive_a_flushed_script_cache(
    stores: tuple[RedisProfileStore, RedisCounters], redis_url: str
) -> None:
    _profiles, counters = stores
    key = cap_key(CAP, "u1", TS)
    assert counters.record([key], TS, 3600) == [1]
    client = open_client(redis_url)
    try:
        client.script_flush()  # as after a restart, or on a promoted replica
    finally:
        client.close()
    assert counters.record([key], TS, 3600) == [2]  # NOSCRIPT: sent again with EVAL
    counters.release([key], TS)
    assert counters.counts([key], TS) == [1]
