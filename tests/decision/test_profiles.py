"""Profile stores: the published snapshot, and Redis loaded from that snapshot, agree."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import redis

from adtarget.audience.build import SnapshotBuilder
from adtarget.audience.redis_profiles import load_snapshot_into_redis
from adtarget.audience.store import SnapshotStore
from adtarget.decision.profiles import (
    MemoryProfileStore,
    SnapshotProfileStore,
    merge_features,
)
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.errors import StoreUnavailable
from adtarget.rules.ast import SEGMENTS_FIELD
from adtarget.rules.registry import DimensionSpec

REGISTRY = {
    "country": DimensionSpec("country", "category"),
    "age": DimensionSpec("age", "number"),
    "genres": DimensionSpec("genres", "set"),
    "kids": DimensionSpec("kids", "bool"),
}


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    s = SnapshotStore(tmp_path / "snapshots")
    b = SnapshotBuilder(store=s, base=None, registry=REGISTRY)
    b.add_batch(
        pa.record_batch(
            {
                "user_id": ["u1", "u2", "u3"],
                "country": ["US", None, "FR"],
                "age": [30, 41, None],
                "genres": [["scifi", "drama"], [], None],
                "kids": [False, True, None],
            }
        )
    )
    b.set_segment("fans", ["u1"])
    s.publish(b.finish())
    return s


def test_snapshot_profiles(store: SnapshotStore) -> None:
    profiles = SnapshotProfileStore(store)
    u1 = profiles.get("u1")
    assert u1 is not None
    assert u1["country"] == "US" and u1["age"] == 30 and u1["kids"] is False
    assert frozenset(u1["genres"]) == {"scifi", "drama"}
    assert "fans" in u1[SEGMENTS_FIELD]
    assert profiles.get("nobody") is None
    assert profiles.version() == store.current_version()
    ids = ["u2", "nobody", "u1", "u3"]
    assert profiles.get_many(ids) == [profiles.get(u) for u in ids]


def test_redis_profiles_loaded_from_snapshot_match(
    store: SnapshotStore, redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    snap = store.current()
    assert snap is not None
    assert load_snapshot_into_redis(snap, client, prefix=redis_prefix).users == 3
    from_redis = RedisProfileStore(redis_url, prefix=redis_prefix, timeout=1.0)
    from_snap = SnapshotProfileStore(store)
    for uid in ("u1", "u2", "u3"):
        a, b = from_redis.get(uid), from_snap.get(uid)
        assert a is not None and b is not None
        norm = {
            k: frozenset(v) if isinstance(v, frozenset | list | tuple) else v for k, v in b.items()
        }
        assert {k: v for k, v in a.items() if v != frozenset()} == {
            k: v for k, v in norm.items() if v != frozenset()
        }
    assert from_redis.get("nobody") is None
    assert from_redis.version() == snap.version
    ids = ["u3", "nobody", "u1", "u2"] * 700  # several pipelines of GET_MANY_BATCH
    assert from_redis.get_many(ids) == [from_redis.get(u) for u in ids]
    from_redis.close()
    client.close()


def test_merge_context_wins_and_lists_become_sets() -> None:
    merged = merge_features({"country": "US", "age": 3}, {"country": "CA", "tags": ["a"]})
    assert merged == {"country": "CA", "age": 3, "tags": frozenset({"a"})}
    assert merge_features(None, {"x": 1}) == {"x": 1}
    assert MemoryProfileStore({"a": {"k": 1}}).get("a") == {"k": 1}


def test_snapshot_profiles_follow_a_new_publish(store: SnapshotStore) -> None:
    """The cached snapshot handle is re-checked after ``check_s`` (0 = every call)."""
    cached = SnapshotProfileStore(store, check_s=3600.0)
    fresh = SnapshotProfileStore(store, check_s=0.0)
    first = store.current_version()
    assert cached.lookup("u1")[1] == first and fresh.version() == first
    b = SnapshotBuilder(store=store, base=None, registry=REGISTRY)
    b.add_batch(pa.record_batch({"user_id": ["u9"], "country": ["DE"]}))
    second = store.publish(b.finish())
    assert second != first
    features, version = fresh.lookup("u9")
    assert version == second and features is not None and features["country"] == "DE"
    assert fresh.get("u1") is None
    assert cached.version() == first  # within check_s: the old, still mapped, snapshot


def test_a_missing_snapshot_the_catalog_expects_is_an_outage(tmp_path: Path) -> None:
    empty = SnapshotStore(tmp_path / "nothing-here")
    lost = SnapshotProfileStore(empty, published=lambda: "v000007")
    with pytest.raises(StoreUnavailable, match="v000007"):
        lost.lookup("u1")
    assert SnapshotProfileStore(empty, published=lambda: None).lookup("u1") == (None, None)

    def catalog_down() -> str | None:
        raise ConnectionError("catalog down")

    unsure = SnapshotProfileStore(empty, published=catalog_down)
    assert unsure.lookup("u1") == (None, None)  # cannot tell: the behaviour before the check
