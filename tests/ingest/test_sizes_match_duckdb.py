"""Sizes after an ingest equal DuckDB's counts over the same file (an independent engine)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adtarget.audience.store import SnapshotStore
from adtarget.rules.eval_bitmap import count
from adtarget.rules.parse import parse

from .conftest import Runner

N = 5000
CASES = [
    ('country in ("US", "CA")', "country IN ('US', 'CA')"),
    ("age between 18 and 34", "age BETWEEN 18 AND 34"),
    ('genres has any ("scifi")', "list_has_any(genres, ['scifi'])"),
    ('not (plan in ("free"))', "NOT coalesce(plan IN ('free'), false)"),
    (
        'country in ("US") and premium = true and age > 40',
        "country = 'US' AND premium AND age > 40",
    ),
]


@pytest.fixture
def population(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    genres = [
        list(rng.choice(["drama", "scifi", "kids", "news"], rng.integers(0, 3), replace=False))
        for _ in range(N)
    ]
    plan = rng.choice(["free", "basic", "premium"], N).astype(object)
    plan[rng.random(N) < 0.1] = None
    age = pa.array(rng.integers(13, 90, N), mask=rng.random(N) < 0.05)
    table = pa.table(
        {
            "user_id": [f"id{i:06d}" for i in range(N)],
            "country": rng.choice(["US", "CA", "FR", "DE"], N),
            "age": age,
            "plan": pa.array(plan, pa.string()),
            "premium": rng.random(N) < 0.3,
            "genres": pa.array(genres, pa.list_(pa.string())),
        }
    )
    path = tmp_path / "pop.parquet"
    pq.write_table(table, path)
    return path


def test_sizes_equal_duckdb(ingest: Runner, population: Path, store: SnapshotStore) -> None:
    job = ingest(population)
    assert job["status"] == "succeeded", job["error"]
    snap = store.current()
    assert snap is not None and snap.num_users == N
    con = duckdb.connect()
    for rule, where in CASES:
        expected = con.execute(
            f"SELECT count(*) FROM read_parquet('{population}') WHERE {where}"
        ).fetchone()
        assert expected is not None
        assert count(parse(rule), snap.index) == expected[0], rule
