"""``ingest --shards N --engine ray`` on a 3-node cluster: the same counts, quarantine rows and
audiences as the single-process upload; a killed task is retried and publishes exactly once; a
build that cannot finish publishes nothing and leaves the previous version serving."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.shards.conftest import RayCluster, non_loopback_connections

from adtarget.audience.service import size_rule
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.store import SnapshotStore
from adtarget.catalog.db import open_catalog
from adtarget.ingest.jobs import run_upload, submit_upload
from adtarget.ingest.quarantine import read_quarantine
from adtarget.ingest.ray_build import CRASH_ENV
from adtarget.settings import Settings

pytestmark = pytest.mark.slow
SCHEMA = {"country": "category", "age": "number", "genres": "set", "premium": "bool"}
RULES = [
    'country in ("US", "CA") and age between 18 and 40',
    'genres has any ("scifi") or premium = true',
    'not country = "FR"',
]


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Users with a sprinkling of bad values, repeated ids and missing ids."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {
            "user_id": f"u{i}",
            "country": rng.choice(["US", "CA", "GB", "FR"]),
            "age": str(rng.randint(13, 80)),
            "genres": "|".join(rng.sample(["scifi", "drama", "news"], rng.randint(0, 2))),
            "premium": rng.choice(["true", "false"]),
        }
        r = rng.random()
        if r < 0.01:
            row["age"] = "old"  # wrong type
        elif r < 0.03:
            row["user_id"] = f"u{rng.randint(0, max(0, i - 1))}"  # a repeated id
        elif r < 0.035:
            row["user_id"] = ""  # missing id
        rows.append(row)
    return rows


def write_file(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".csv":
        lines = ["user_id,country,age,genres,premium"]
        for i, r in enumerate(rows):
            lines.append(",".join(str(r[k]) for k in r))
            if i % 97 == 5:
                lines.append(f"u{i},US,1,x,true,extra")  # a row the parser cannot split
        path.write_text("\n".join(lines) + "\n")
    elif path.suffix == ".jsonl":
        with path.open("w") as fh:
            for i, r in enumerate(rows):
                fh.write(json.dumps(r) + "\n")
                if i % 101 == 7:
                    fh.write("{not json\n")
    else:
        table = pa.Table.from_pylist(rows)
        pq.write_table(table, path, row_group_size=300)
    return path


def upload(cfg: Settings, path: Path, **options: Any) -> dict[str, Any]:
    factory = open_catalog(cfg)
    job = submit_upload(
        settings=cfg, session_factory=factory, path=path, mode="replace", actor="t", **options
    )
    return run_upload(job["id"], settings=cfg, session_factory=factory)


def settings_for(tmp: Path, name: str, cluster: RayCluster) -> Settings:
    return Settings(data_dir=tmp / name, actor="tester", ray_address=cluster.address)


def quarantine_rows(job: dict[str, Any]) -> list[tuple[Any, ...]]:
    if not job["quarantine"]:
        return []
    rows = read_quarantine(Path(job["quarantine"]))
    return sorted((r["line"], r["field"], r["reason"], r["row"]) for r in rows)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_ray_build_equals_single_process(
    ray_cluster: RayCluster, tmp_path: Path, suffix: str
) -> None:
    src = write_file(tmp_path / f"users{suffix}", _rows(2400, seed=len(suffix)))
    one_cfg = settings_for(tmp_path, "one", ray_cluster)
    ray_cfg = settings_for(tmp_path, "ray", ray_cluster)
    one = upload(one_cfg, src, schema=SCHEMA)
    many = upload(ray_cfg, src, schema=SCHEMA, shards=3, engine="ray")
    assert one["status"] == many["status"] == "succeeded", many["error"]
    assert many["shards"] == 3 and many["report"]["pieces"] > 1
    for key in ("rows_read", "rows_accepted", "rows_rejected"):
        assert many[key] == one[key], key
    assert one["rows_rejected"] > 50
    assert quarantine_rows(many) == quarantine_rows(one)
    snap_one = SnapshotStore(one_cfg.snapshots_dir).current()
    snap_many = SnapshotStore(ray_cfg.snapshots_dir).current()
    assert isinstance(snap_many, ShardedSnapshot) and snap_one is not None
    assert snap_many.num_users == snap_one.num_users
    for rule in RULES:
        want = size_rule(snapshot=snap_one, rule_text=rule, min_size=0)["count"]
        assert size_rule(snapshot=snap_many, rule_text=rule, min_size=0)["count"] == want
    for uid in ("u0", "u17", "u999", "u2399"):
        assert snap_many.features_of(uid) == snap_one.features_of(uid)
    assert non_loopback_connections() == []


def test_killed_task_is_retried_and_publishes_once(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = settings_for(tmp_path, "data", ray_cluster)
    src = write_file(tmp_path / "a.csv", _rows(900, seed=3))
    first = upload(cfg, src, schema=SCHEMA, shards=2, engine="ray")
    assert first["status"] == "succeeded", first["error"]
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(CRASH_ENV, f"1:{marker}")
    second = upload(cfg, write_file(tmp_path / "b.csv", _rows(800, seed=4)), shards=2, engine="ray")
    assert second["status"] == "succeeded", second["error"]
    assert marker.exists()  # shard 1's first attempt really killed its worker
    store = SnapshotStore(cfg.snapshots_dir)
    assert store.versions() == ["v000001", "v000002"] and store.current_version() == "v000002"
    assert second["snapshot"] == "v000002"
    assert not [p for p in cfg.snapshots_dir.iterdir() if p.name.startswith(".tmp-")]


def test_build_that_cannot_finish_keeps_the_previous_version(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = settings_for(tmp_path, "data", ray_cluster)
    src = write_file(tmp_path / "a.csv", _rows(700, seed=5))
    first = upload(cfg, src, schema=SCHEMA, shards=3, engine="ray")
    assert first["status"] == "succeeded", first["error"]
    monkeypatch.setenv(CRASH_ENV, "2:")  # every attempt of shard 2 dies
    failed = upload(cfg, write_file(tmp_path / "b.csv", _rows(500, seed=6)), shards=3, engine="ray")
    assert failed["status"] == "failed"
    assert "shard 2" in failed["error"] and "nothing was published" in failed["error"]
    store = SnapshotStore(cfg.snapshots_dir)
    assert store.versions() == ["v000001"] and store.current_version() == "v000001"
    assert not [p for p in cfg.snapshots_dir.iterdir() if p.name.startswith(".tmp-")]
    snap = store.current()
    assert isinstance(snap, ShardedSnapshot)
    assert size_rule(snapshot=snap, rule_text='not country = "FR"', min_size=0)["count"] > 0
