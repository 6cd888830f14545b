"""Sharded snapshots in process: same answers as one snapshot, atomic publish, rollback, upsert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.audience.conftest import REGISTRY, build, population, to_batch
from tests.rules.strategies import RULES, SEGMENTS

from adtarget.audience.service import export_rule, overlap_rules, size_rule
from adtarget.audience.shard_build import ShardedBuilder
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.sharding import shard_of, shards_of
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import SnapshotStore
from adtarget.errors import InvalidValue
from adtarget.rules.ast import SEGMENTS_FIELD, Rule

N_USERS = 700


def build_sharded(
    store: SnapshotStore,
    users: list[dict[str, Any]],
    shards: int,
    *,
    mode: str = "replace",
    publish: bool = True,
) -> ShardedSnapshot | Path:
    """The sharded twin of conftest.build."""
    b = ShardedBuilder(
        store=store,
        base=store.current(),
        registry=REGISTRY,
        shards=shards,
        mode=mode,  # type: ignore[arg-type]
    )
    for i in range(0, len(users), 250):
        b.add_batch(to_batch(users[i : i + 250]))
    for seg in SEGMENTS:
        b.set_segment(seg, [u["user_id"] for u in users if seg in u.get(SEGMENTS_FIELD, ())])
    staged = b.finish()
    if not publish:
        return staged
    store.publish(staged)
    snap = store.current()
    assert isinstance(snap, ShardedSnapshot)
    return snap


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, ShardedSnapshot]:
    users = population(N_USERS, seed=17)
    one = build(SnapshotStore(tmp_path_factory.mktemp("one")), users)
    many = build_sharded(SnapshotStore(tmp_path_factory.mktemp("many")), users, 3)
    assert isinstance(many, ShardedSnapshot)
    return one, many


def test_shard_of_is_stable_and_vectorized() -> None:
    ids = [f"user-{i}" for i in range(2000)] + ["", "é-ü", "x" * 40]
    vec = shards_of(pa.array(ids), 7)
    assert [shard_of(u, 7) for u in ids] == vec.tolist()
    assert shard_of("user-1", 4) == shard_of("user-1", 4)
    counts = [int((vec == k).sum()) for k in range(7)]
    assert min(counts) > 200  # spread over every shard


def test_every_user_lives_in_its_hash_shard(pair: tuple[Snapshot, ShardedSnapshot]) -> None:
    one, many = pair
    assert many.num_users == one.num_users == N_USERS
    for k, shard in enumerate(many.shards):
        ids = shard.ids_array().to_pylist()
        assert ids and all(shard_of(u, 3) == k for u in ids)
    for i in range(0, N_USERS, 7):
        uid = f"user-{i:05d}"
        assert many.features_of(uid) == one.features_of(uid)
    assert many.features_of("nobody") is None
    assert many.segment_info() == one.segment_info()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=RULES)
def test_sizes_equal_unsharded(pair: tuple[Snapshot, ShardedSnapshot], rule: Rule) -> None:
    one, many = pair
    a = size_rule(snapshot=one, rule_text=rule, min_size=0)
    b = size_rule(snapshot=many, rule_text=rule, min_size=0)
    assert b["count"] == a["count"]
    assert b["shards"] == 3 and "shards" not in a


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=st.lists(RULES, min_size=1, max_size=4))
def test_overlaps_equal_unsharded(
    pair: tuple[Snapshot, ShardedSnapshot], rules: list[Rule]
) -> None:
    one, many = pair
    a = overlap_rules(snapshot=one, rules=rules, min_size=0)
    b = overlap_rules(snapshot=many, rules=rules, min_size=0)
    assert b["matrix"] == a["matrix"]
    assert b["shards"] == 3


def test_export_is_the_same_set(pair: tuple[Snapshot, ShardedSnapshot], tmp_path: Path) -> None:
    one, many = pair
    rule = 'country in ("US", "CA") or premium = true'
    a = export_rule(snapshot=one, rule_text=rule, out_path=tmp_path / "a.csv", min_size=0)
    b = export_rule(
        snapshot=many, rule_text=rule, out_path=tmp_path / "b.csv", min_size=0, chunk_size=50
    )
    assert b["count"] == a["count"] > 100 and b["shards"] == 3
    ids_a = pacsv.read_csv(tmp_path / "a.csv").column("user_id").to_pylist()
    ids_b = pacsv.read_csv(tmp_path / "b.csv").column("user_id").to_pylist()
    assert sorted(ids_b) == sorted(ids_a) and len(ids_b) == len(set(ids_b))
    with pytest.raises(InvalidValue) as err:
        export_rule(snapshot=many, rule_text=rule, out_path=tmp_path / "c.csv", min_size=10**6)
    assert err.value.field == "rule" and not (tmp_path / "c.csv").exists()


def test_publish_is_atomic_and_rollback_works(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    users = population(300, seed=3)
    first = build_sharded(store, users, 2)
    assert isinstance(first, ShardedSnapshot) and first.version == "v000001"
    staged = build_sharded(store, users[:100], 2, publish=False)
    assert isinstance(staged, Path)
    (staged / "manifest.json").unlink()  # a build that did not finish: not publishable
    with pytest.raises(InvalidValue):
        store.publish(staged)
    assert store.current_version() == "v000001"
    second = build_sharded(store, users[:150], 2)
    assert isinstance(second, ShardedSnapshot) and second.num_users == 150
    assert store.manifests()[-1]["shards"] == 2
    store.rollback("v000001")
    back = store.current()
    assert isinstance(back, ShardedSnapshot) and back.num_users == 300


def test_upsert_goes_to_the_users_shards(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    users = population(400, seed=5)
    build_sharded(store, users, 4)
    changed = [dict(u, country="CA") for u in users[:50]]
    new = [{"user_id": f"new-{i}", "country": "US"} for i in range(30)]
    snap = build_sharded(store, changed + new, 4, mode="upsert")
    assert isinstance(snap, ShardedSnapshot) and snap.num_users == 430
    for u in changed[:10]:
        assert snap.features_of(u["user_id"])["country"] == "CA"  # type: ignore[index]
    assert snap.features_of("new-3") == {"country": "US", SEGMENTS_FIELD: frozenset()}
    with pytest.raises(InvalidValue) as err:
        build_sharded(store, new, 3, mode="upsert")
    assert err.value.field == "shards"


def test_upsert_into_unsharded_is_refused(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    build(store, population(50))
    with pytest.raises(InvalidValue) as err:
        build_sharded(store, population(10), 2, mode="upsert")
    assert err.value.field == "shards" and "--mode replace" in err.value.message


def test_embedded_default_never_imports_ray(tmp_path: Path) -> None:
    """Serving and sizing a sharded snapshot in process (the default backend) loads no Ray."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from adtarget.api.app import create_app\n"
        "from adtarget.cli.main import app\n"
        "from adtarget.audience.stores import snapshot_store_for\n"
        "from adtarget.audience.service import size_rule\n"
        "from adtarget.settings import Settings\n"
        f"s = Settings(data_dir={str(tmp_path)!r})\n"
        "create_app(s)\n"
        "snap = snapshot_store_for(s).current()\n"
        "print(size_rule(snapshot=snap, rule_text='premium = true', min_size=0)['shards'])\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    build_sharded(SnapshotStore(tmp_path / "snapshots"), population(60), 2)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"
