"""SnapshotBuilder -> publish -> Snapshot round trips: features, upsert, removal, segments."""

from __future__ import annotations

import pyarrow as pa
import pytest
from tests.audience.conftest import REGISTRY, build, population, to_batch

from adtarget.audience.build import SnapshotBuilder
from adtarget.audience.store import SnapshotStore
from adtarget.errors import InvalidValue
from adtarget.rules.ast import SEGMENTS_FIELD
from adtarget.rules.eval_bitmap import evaluate
from adtarget.rules.eval_python import matches
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec


def _clean(u: dict) -> dict:
    out = {k: v for k, v in u.items() if k != "user_id" and v is not None}
    for k, v in list(out.items()):
        if isinstance(v, frozenset) and not v and k != SEGMENTS_FIELD:
            del out[k]
    return out


def test_round_trip_features_and_ids(store: SnapshotStore) -> None:
    users = population(700)
    snap = build(store, users, batch_size=256)
    assert snap.version == "v000001"
    assert snap.num_users == 700
    for i, u in enumerate(users):
        assert snap.ordinal_of(u["user_id"]) == i
        assert snap.user_id_of(i) == u["user_id"]
        assert snap.features(i) == _clean(u)
    assert snap.ordinal_of("nobody") is None
    assert set(snap.segment_names()) == {"s1", "s2", "s3"}


def test_bitmaps_match_per_user_evaluation(store: SnapshotStore) -> None:
    users = population(400, seed=3)
    snap = build(store, users)
    for text in [
        'country in ("US", "CA")',
        "age between 1 and 3",
        "age > 2.5",
        "age = 2",
        'genres has any ("scifi")',
        'genres has all ("scifi", "drama")',
        "premium = true",
        "device is missing",
        "tags is not missing",
        'not segment("s1")',
        '"geo.score" >= 0.5' if False else "geo.score >= 0.5",
    ]:
        rule = parse(text)
        expected = {i for i, u in enumerate(users) if matches(rule, _clean(u))}
        assert set(evaluate(rule, snap.index)) == expected, text


def test_upsert_keeps_ordinals_and_appends(store: SnapshotStore) -> None:
    users = population(300)
    base = build(store, users)
    changed = [dict(users[5], age=99.0), {"user_id": "new-1", "country": "FR"}]
    b = SnapshotBuilder(store=store, base=base, registry=REGISTRY, mode="upsert")
    b.add_batch(to_batch(changed, dims=["country", "age"]))
    b.remove_users(["user-00007"])
    diff = b.diff()
    assert diff["users_added"] == 1
    assert diff["users_removed"] == 1
    assert diff["users_changed"] == (1 if users[5].get("age") != 99.0 else 0)
    store.publish(b.finish())
    snap = store.current()
    assert snap is not None and snap.version == "v000002"
    for i, u in enumerate(users):
        if i != 7:
            assert snap.ordinal_of(u["user_id"]) == i
    assert snap.ordinal_of("user-00007") is None
    assert snap.ordinal_of("new-1") == 300
    assert snap.num_users == 300
    assert snap.features(5)["age"] == 99.0
    # columns absent from the upsert batch keep their base values
    assert snap.features(5).get("genres") == _clean(users[5]).get("genres")
    assert snap.features(300) == {"country": "FR", SEGMENTS_FIELD: frozenset()}
    assert 7 not in snap.index.universe()
    assert 7 not in evaluate(parse('segment("s1") or not segment("s1")'), snap.index)


def test_replace_carries_list_segments_by_user_id(store: SnapshotStore) -> None:
    users = population(200)
    base = build(store, users)
    b = SnapshotBuilder(store=store, base=base, registry=REGISTRY, mode="replace")
    b.add_batch(to_batch(users[::-1][:150]))  # new order, 50 users gone
    store.publish(b.finish())
    snap = store.current()
    assert snap is not None
    kept = {u["user_id"] for u in users[::-1][:150]}
    for u in users:
        o = snap.ordinal_of(u["user_id"])
        if u["user_id"] in kept:
            assert o is not None and snap.features(o)[SEGMENTS_FIELD] == u[SEGMENTS_FIELD]
        else:
            assert o is None


def test_segment_ttl_expires_at_read_time(store: SnapshotStore) -> None:
    users = population(50)
    b = SnapshotBuilder(store=store, base=None, registry=REGISTRY, mode="replace", now=1000.0)
    b.add_batch(to_batch(users))
    stats = b.set_segment("short", ["user-00001", "user-00002", "ghost"], ttl_seconds=60)
    assert stats["matched"] == 2 and stats["ids_unique"] == 3 and stats["expires_at"] == 1060
    b.set_segment("long", ["user-00003"])
    path = b.finish()
    from adtarget.audience.snapshot import Snapshot

    now = [1030.0]
    snap = Snapshot(path, clock=lambda: now[0])
    assert set(snap.index.segment("short")) == {1, 2}
    assert "short" in snap.features(1)[SEGMENTS_FIELD]
    now[0] = 1060.0
    assert len(snap.index.segment("short")) == 0
    assert snap.features(1)[SEGMENTS_FIELD] == frozenset()
    assert set(snap.index.segment("long")) == {3}


def test_rule_segment_materialized_and_rebuilt(store: SnapshotStore) -> None:
    users = population(200)
    b = SnapshotBuilder(store=store, base=None, registry=REGISTRY, mode="replace")
    b.add_batch(to_batch(users))
    b.add_rule_segment("north", 'country in ("CA")')
    store.publish(b.finish())
    snap = store.current()
    assert snap is not None
    want = {i for i, u in enumerate(users) if u.get("country") == "CA"}
    assert set(snap.index.segment("north")) == want
    assert snap.segment_info()["north"]["kind"] == "rule"
    # an upsert re-materializes it against the new data
    b = SnapshotBuilder(store=store, base=snap, registry=REGISTRY, mode="upsert")
    b.add_batch(to_batch([{"user_id": "user-00000", "country": "CA"}], dims=["country"]))
    store.publish(b.finish())
    snap2 = store.current()
    assert snap2 is not None and 0 in snap2.index.segment("north")


def test_duplicate_ids_and_unknown_columns_are_rejected(store: SnapshotStore) -> None:
    b = SnapshotBuilder(store=store, base=None, registry=REGISTRY, mode="replace")
    b.add_batch(pa.record_batch({"user_id": ["a", "b"]}))
    b.add_batch(pa.record_batch({"user_id": ["c", "a"]}))
    with pytest.raises(InvalidValue, match="'a' appears more than once"):
        b.finish()
    b = SnapshotBuilder(store=store, base=None, registry=REGISTRY, mode="replace")
    with pytest.raises(InvalidValue) as err:
        b.add_batch(pa.record_batch({"user_id": ["a"], "colour": ["red"]}))
    assert err.value.field == "colour"
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp-")]


def test_type_change_in_upsert_is_refused(store: SnapshotStore) -> None:
    base = build(store, population(20))
    with pytest.raises(InvalidValue) as err:
        SnapshotBuilder(
            store=store,
            base=base,
            mode="upsert",
            registry={"age": DimensionSpec("age", "category")},
        )
    assert err.value.field == "age"


def test_integer_numbers_and_empty_population(store: SnapshotStore) -> None:
    reg = {"n": DimensionSpec("n", "number")}
    b = SnapshotBuilder(store=store, base=None, registry=reg, mode="replace")
    b.add_batch(pa.record_batch({"user_id": ["x", "y", "z"], "n": pa.array([5, None, -3])}))
    store.publish(b.finish())
    snap = store.current()
    assert snap is not None
    assert snap.features(0)["n"] == 5 and isinstance(snap.features(0)["n"], int)
    assert set(evaluate(parse("n < 0"), snap.index)) == {2}
    empty = SnapshotBuilder(store=store, base=None, registry=reg, mode="replace")
    store.publish(empty.finish())
    snap = store.current()
    assert snap is not None and snap.num_users == 0 and snap.ordinal_of("x") is None


def test_segment_only_upsert_links_base_files(store: SnapshotStore) -> None:
    users = population(120)
    base = build(store, users)
    b = SnapshotBuilder(store=store, base=base, registry={}, mode="upsert")
    stats = b.set_segment("fans", ["user-00003", "user-00004", "nobody"])
    assert stats["matched"] == 2 and stats["match_rate"] == 2 / 3
    store.publish(b.finish())
    snap = store.current()
    assert snap is not None and snap.version == "v000002"
    assert (snap.path / "ids.data.bin").stat().st_ino == (base.path / "ids.data.bin").stat().st_ino
    assert set(snap.index.segment("fans")) == {3, 4}
    assert set(snap.index.segment("s1")) == set(base.index.segment("s1"))
    for i in (0, 3, 119):
        want = dict(base.features(i))
        want[SEGMENTS_FIELD] = want[SEGMENTS_FIELD] | ({"fans"} if i in (3, 4) else set())
        assert snap.features(i) == want


def test_ids_with_colliding_hash_keys_resolve_exactly(store: SnapshotStore) -> None:
    import numpy as np

    from adtarget.audience.idhash import hash_ids

    cands = pa.array([f"c{i}" for i in range(300_000)], pa.large_string())
    keys = hash_ids(cands) >> np.uint64(32)
    order = np.argsort(keys, kind="stable")
    same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    assert len(same)  # birthday bound: 300k ids always collide somewhere in 32 bits
    a, b = (cands[int(order[same[0]])].as_py(), cands[int(order[same[0] + 1])].as_py())
    reg = {"n": DimensionSpec("n", "number")}
    builder = SnapshotBuilder(store=store, base=None, registry=reg, mode="replace")
    builder.add_batch(pa.record_batch({"user_id": ["x", a, b], "n": [1.0, 2.0, 3.0]}))
    store.publish(builder.finish())
    snap = store.current()
    assert snap is not None
    assert (snap.ordinal_of(a), snap.ordinal_of(b), snap.ordinal_of("x")) == (1, 2, 0)
    dup = SnapshotBuilder(store=store, base=None, registry=reg, mode="replace")
    dup.add_batch(pa.record_batch({"user_id": [a, b, a]}))
    with pytest.raises(InvalidValue, match="appears more than once"):
        dup.finish()
