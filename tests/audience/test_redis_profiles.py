"""Redis profiles on a real Redis: versions switch whole, dropped users go, old ones are pruned."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from adtarget.audience.redis_profiles import (
    LOADED_KEY,
    LOADING_KEY,
    VERSION_KEY,
    load_profiles_into_redis,
    user_key,
)
from adtarget.decision.profiles_redis import RedisProfileStore

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()  # the redis_prefix fixture deletes the keys


def _keys(client: Any, prefix: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=f"{prefix}*:u:*")}


def _fresh_reader(url: str, prefix: str) -> RedisProfileStore:
    return RedisProfileStore(url, prefix=prefix, timeout=1.0)


def test_a_user_dropped_by_the_new_version_is_unknown(
    client: Any, redis_url: str, redis_prefix: str
) -> None:
    load_profiles_into_redis(
        [("u1", {"country": "US"}), ("u2", {"country": "FR"})],
        client,
        version="v000001",
        prefix=redis_prefix,
    )
    load_profiles_into_redis(
        [("u1", {"country": "DE"})], client, version="v000002", prefix=redis_prefix
    )
    reader = _fresh_reader(redis_url, redis_prefix)
    assert reader.lookup("u1") == ({"country": "DE"}, "v000002")
    assert reader.lookup("u2") == (None, "v000002")  # in-place loading kept u2 forever
    reader.close()


def test_a_reader_on_the_old_pointer_still_reads_the_old_version_whole(
    client: Any, redis_url: str, redis_prefix: str
) -> None:
    load_profiles_into_redis(
        [("u1", {"age": 30}), ("u2", {"age": 40})], client, version="v000001", prefix=redis_prefix
    )
    reader = _fresh_reader(redis_url, redis_prefix)
    assert reader.lookup("u1") == ({"age": 30}, "v000001")  # caches the pointer
    load_profiles_into_redis([("u1", {"age": 31})], client, version="v000002", prefix=redis_prefix)
    assert reader.lookup("u1") == ({"age": 30}, "v000001")  # no mix of versions
    assert reader.lookup("u2") == ({"age": 40}, "v000001")
    assert _fresh_reader(redis_url, redis_prefix).lookup("u1") == ({"age": 31}, "v000002")
    reader.close()


def test_only_the_live_and_the_previous_version_stay(client: Any, redis_prefix: str) -> None:
    for n in range(1, 5):
        load_profiles_into_redis(
            [(f"u{i}", {"n": n}) for i in range(3)],
            client,
            version=f"v{n:06d}",
            prefix=redis_prefix,
        )
    live = {user_key(redis_prefix, v, f"u{i}") for v in ("v000003", "v000004") for i in range(3)}
    assert _keys(client, redis_prefix) == live
    assert {k.decode() for k in client.hkeys(redis_prefix + LOADED_KEY)} == {"v000003", "v000004"}


def test_a_version_still_loaded_is_made_live_without_rewriting_it(
    client: Any, redis_url: str, redis_prefix: str
) -> None:
    load_profiles_into_redis([("u1", {"a": 1})], client, version="v000001", prefix=redis_prefix)
    load_profiles_into_redis([("u1", {"a": 2})], client, version="v000002", prefix=redis_prefix)

    def must_not_read() -> Iterator[tuple[str, dict[str, Any]]]:
        raise AssertionError("rows read although the version is in Redis")
        yield  # pragma: no cover

    back = load_profiles_into_redis(must_not_read(), client, version="v000001", prefix=redis_prefix)
    assert back.repointed and back.users == 1
    assert client.get(redis_prefix + VERSION_KEY) == b"v000001"
    assert _fresh_reader(redis_url, redis_prefix).get("u1") == {"a": 1}
    again = load_profiles_into_redis(
        [("u1", {"a": 3})], client, version="v000001", prefix=redis_prefix, reuse=False
    )
    assert not again.repointed
    assert _fresh_reader(redis_url, redis_prefix).get("u1") == {"a": 3}


def test_a_load_that_died_is_cleaned_by_the_next(client: Any, redis_prefix: str) -> None:
    load_profiles_into_redis([("u1", {"a": 1})], client, version="v000001", prefix=redis_prefix)
    client.sadd(redis_prefix + LOADING_KEY, "v000002")  # a loader killed half way
    client.hset(user_key(redis_prefix, "v000002", "u9"), mapping={"a": "9"})

    def dies() -> Iterator[tuple[str, dict[str, Any]]]:
        yield "u1", {"a": 5}
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        load_profiles_into_redis(dies(), client, version="v000003", prefix=redis_prefix)
    assert client.get(redis_prefix + VERSION_KEY) == b"v000001"  # nothing half-live
    load_profiles_into_redis([("u1", {"a": 4})], client, version="v000004", prefix=redis_prefix)
    assert _keys(client, redis_prefix) == {
        user_key(redis_prefix, "v000001", "u1"),
        user_key(redis_prefix, "v000004", "u1"),
    }
    assert client.smembers(redis_prefix + LOADING_KEY) == set()


def test_nothing_loaded_means_no_profiles(redis_url: str, redis_prefix: str) -> None:
    reader = _fresh_reader(redis_url, redis_prefix)
    assert reader.lookup("u1") == (None, None) and reader.version() is None
    reader.close()
