"""Sizes from the snapshot equal DuckDB's count over the same users, for random rules.

Three independent answers must agree: the bitmap count on the published snapshot, DuckDB
running the rule compiled to SQL over the same rows, and the per-user evaluator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from tests.audience.conftest import REGISTRY, build, population, to_batch
from tests.rules.strategies import RULES

from adtarget.audience.service import size_rule
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import SnapshotStore
from adtarget.rules.ast import SEGMENTS_FIELD, Rule
from adtarget.rules.eval_python import matches
from adtarget.rules.eval_sql import to_sql
from adtarget.rules.format import to_text

N = 1500


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, Any, list[dict[str, Any]]]:
    users = population(N, seed=11)
    store = SnapshotStore(Path(tmp_path_factory.mktemp("dk")) / "snapshots")
    snap = build(store, users, batch_size=400)
    table = pa.Table.from_batches([to_batch(users)])
    segs = pa.array([sorted(u[SEGMENTS_FIELD]) for u in users], pa.list_(pa.string()))
    table = table.append_column(SEGMENTS_FIELD, segs)
    con = duckdb.connect()
    con.register("users", table)
    return snap, con, users


def _duck(con: Any, rule: Rule) -> int:
    where, params = to_sql(rule, registry=REGISTRY, dialect="duckdb")
    return int(con.execute(f"SELECT count(*) FROM users WHERE {where}", params).fetchone()[0])


def test_fixed_rules_match_duckdb(world: tuple[Snapshot, Any, list[dict[str, Any]]]) -> None:
    snap, con, _ = world
    from adtarget.rules.parse import parse

    for text in [
        'country in ("US", "CA") and age between 1 and 3 and genres has any ("scifi") '
        'and not premium = true and device in ("ios", "web")',
        "age >= 2.5 or geo.score < 0",
        'tags has all ("a", "b") or segment("s2")',
        "device is missing and not genres is missing",
    ]:
        got = size_rule(snapshot=snap, rule_text=text, registry=REGISTRY, min_size=0)
        assert got["count"] == _duck(con, parse(text)), text
        assert got["snapshot"] == snap.version


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=RULES)
def test_random_rules_match_duckdb_and_per_user(
    world: tuple[Snapshot, Any, list[dict[str, Any]]], rule: Rule
) -> None:
    snap, con, users = world
    got = size_rule(snapshot=snap, rule_text=to_text(rule), registry=REGISTRY, min_size=0)
    assert got["count"] == _duck(con, rule)
    per_user = sum(
        1 for u in users if matches(rule, {k: v for k, v in u.items() if k != "user_id"})
    )
    assert got["count"] == per_user
