"""Fixtures for audience tests: a store in a temp dir and a small generated population."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.rules.strategies import POOLS, REGISTRY, SEGMENTS

from adtarget.audience.build import SnapshotBuilder
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import SnapshotStore
from adtarget.rules.ast import SEGMENTS_FIELD

ARROW_TYPES: dict[str, pa.DataType] = {
    "category": pa.string(),
    "number": pa.float64(),
    "bool": pa.bool_(),
    "set": pa.list_(pa.string()),
}


def population(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """Users with values from the rule strategies' pools (so rules hit), some missing."""
    rng = random.Random(seed)
    users = []
    for i in range(n):
        u: dict[str, Any] = {"user_id": f"user-{i:05d}"}
        for dim, spec in REGISTRY.items():
            if rng.random() < 0.15:
                continue
            if spec.type == "set":
                u[dim] = frozenset(rng.sample(POOLS[dim], rng.randint(0, 3)))
            else:
                u[dim] = rng.choice(POOLS[dim])
        u[SEGMENTS_FIELD] = frozenset(s for s in SEGMENTS if rng.random() < 0.3)
        users.append(u)
    return users


def to_batch(users: list[dict[str, Any]], dims: list[str] | None = None) -> pa.RecordBatch:
    """The users as an Arrow batch of typed columns (null = missing)."""
    names = dims if dims is not None else list(REGISTRY)
    cols: dict[str, pa.Array] = {"user_id": pa.array([u["user_id"] for u in users], pa.string())}
    for dim in names:
        spec = REGISTRY[dim]
        vals = [u.get(dim) for u in users]
        if spec.type == "set":
            vals = [sorted(v) if v is not None else None for v in vals]
        elif spec.type == "number":
            vals = [float(v) if v is not None else None for v in vals]
        cols[dim] = pa.array(vals, ARROW_TYPES[spec.type])
    return pa.RecordBatch.from_pydict(cols)


def build(
    store: SnapshotStore,
    users: list[dict[str, Any]],
    *,
    base: Snapshot | None = None,
    mode: str = "replace",
    batch_size: int = 500,
    number_layout: str | None = None,
) -> Snapshot:
    """Build and publish a snapshot of ``users`` (list segments from ``__segments__``)."""
    b = SnapshotBuilder(
        store=store,
        base=base,
        registry=REGISTRY,
        mode=mode,  # type: ignore[arg-type]
        number_layout=number_layout,
    )
    for i in range(0, len(users), batch_size):
        b.add_batch(to_batch(users[i : i + batch_size]))
    for seg in SEGMENTS:
        b.set_segment(seg, [u["user_id"] for u in users if seg in u.get(SEGMENTS_FIELD, ())])
    store.publish(b.finish())
    snap = store.current()
    assert snap is not None
    return snap


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    """An empty snapshot store."""
    return SnapshotStore(tmp_path / "snapshots", keep=3)
