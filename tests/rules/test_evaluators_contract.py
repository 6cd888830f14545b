"""The proof that the three evaluators agree: random rules × random users, same users selected.

Per-user (compiled and interpreted), bitmaps (``MemoryBitmapIndex``) and SQL on a real in-memory
DuckDB; a smaller run of the PostgreSQL dialect on the real server (``pg_url``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adtarget.rules.ast import SEGMENTS_FIELD, Between, Compare, HasAll, HasAny, IsMissing, Rule
from adtarget.rules.eval_bitmap import MemoryBitmapIndex, count, evaluate
from adtarget.rules.eval_python import _interpret, compile_rule
from adtarget.rules.eval_sql import to_sql
from adtarget.rules.format import to_text
from adtarget.rules.validate import validate

from .strategies import LEAVES, REGISTRY, RULES, USERS

_ARROW_TYPES = {"category": pa.string(), "number": pa.float64(), "bool": pa.bool_()}


def _arrow_table(users: list[dict[str, Any]]) -> pa.Table:
    """Users as a table: one column per dimension, sets as sorted lists, missing as NULL."""
    cols: dict[str, pa.Array] = {"ord": pa.array(range(len(users)), pa.int64())}
    for dim, spec in REGISTRY.items():
        vals = [u.get(dim) for u in users]
        if spec.type == "set":
            cols[dim] = pa.array(
                [None if v is None else sorted(v) for v in vals], pa.list_(pa.string())
            )
        else:
            cols[dim] = pa.array(vals, _ARROW_TYPES[spec.type])
    cols[SEGMENTS_FIELD] = pa.array(
        [sorted(u[SEGMENTS_FIELD]) if SEGMENTS_FIELD in u else None for u in users],
        pa.list_(pa.string()),
    )
    return pa.table(cols)


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(":memory:")
    yield con
    con.close()


def _python_ids(rule: Rule, users: list[dict[str, Any]]) -> list[int]:
    fn = compile_rule(rule)
    compiled = [i for i, u in enumerate(users) if fn(u)]
    interpreted = [i for i, u in enumerate(users) if _interpret(rule, u)]
    assert compiled == interpreted, to_text(rule)
    return compiled


def _check_all(duck: duckdb.DuckDBPyConnection, rule: Rule, users: list[dict[str, Any]]) -> None:
    validate(rule, REGISTRY)  # the generator only makes registry-consistent rules
    expected = _python_ids(rule, users)

    index = MemoryBitmapIndex.from_rows(users, REGISTRY)
    assert list(evaluate(rule, index)) == expected, to_text(rule)
    assert count(rule, index) == len(expected), to_text(rule)

    table = _arrow_table(users)
    columnar = MemoryBitmapIndex.from_arrow(table, REGISTRY)
    assert list(evaluate(rule, columnar)) == expected, to_text(rule)
    assert count(rule, columnar) == len(expected), to_text(rule)
    duck.register("users_t", table)
    try:
        sql, params = to_sql(rule, registry=REGISTRY, dialect="duckdb", table_alias="u")
        rows = duck.execute(f"SELECT u.ord FROM users_t AS u WHERE {sql} ORDER BY 1", params)
        assert [r[0] for r in rows.fetchall()] == expected, (to_text(rule), sql, params)
    finally:
        duck.unregister("users_t")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=RULES, users=st.lists(USERS, min_size=1, max_size=40))
def test_python_bitmap_duckdb_select_the_same_users(
    duck: duckdb.DuckDBPyConnection, rule: Rule, users: list[dict[str, Any]]
) -> None:
    _check_all(duck, rule, users)


_EDGE_USERS: list[dict[str, Any]] = [
    {},
    {"genres": frozenset(), "age": 2, "country": None},
    {"genres": frozenset({"scifi"}), "age": 2.5, "premium": False},
    {"genres": frozenset({"scifi", "drama"}), "age": 3, "country": "US", SEGMENTS_FIELD: {"s1"}},
    {"genres": None, "age": None, "premium": None, SEGMENTS_FIELD: frozenset()},
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=LEAVES, users=st.lists(USERS, min_size=10, max_size=40))
@example(rule=HasAll("genres", ("scifi", "drama")), users=_EDGE_USERS)
@example(rule=HasAny("genres", ("drama", "news")), users=_EDGE_USERS)
@example(rule=IsMissing("genres"), users=_EDGE_USERS)
@example(rule=Compare("country", "!=", "US"), users=_EDGE_USERS)
@example(rule=Between("age", 2, 2.5), users=_EDGE_USERS)
@example(rule=Compare("age", ">", 2), users=_EDGE_USERS)
@example(rule=Compare("premium", "!=", True), users=_EDGE_USERS)
def test_every_predicate_alone_selects_the_same_users(
    duck: duckdb.DuckDBPyConnection, rule: Rule, users: list[dict[str, Any]]
) -> None:
    """Single predicates with many users: where semantic slips (NULLs, empty sets) show first."""
    _check_all(duck, rule, users)


_PG_TYPES = {"category": "text", "number": "double precision", "bool": "boolean", "set": "text[]"}


@pytest.mark.postgres
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rule=RULES, users=st.lists(USERS, max_size=15))
def test_postgres_dialect_selects_the_same_users(
    pg_url: str, rule: Rule, users: list[dict[str, Any]]
) -> None:
    import psycopg

    expected = _python_ids(rule, users)
    cols = [*REGISTRY, SEGMENTS_FIELD]
    ddl = ", ".join(
        f'"{d}" {_PG_TYPES[REGISTRY[d].type] if d in REGISTRY else "text[]"}' for d in cols
    )
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE TEMP TABLE users_t (ord integer, {ddl})")
        rows = []
        for i, u in enumerate(users):
            row: list[Any] = [i]
            for d in cols:
                v = u.get(d)
                row.append(sorted(v) if isinstance(v, frozenset) else v)
            rows.append(row)
        quoted = ", ".join(f'"{d}"' for d in cols)
        marks = ", ".join(["%s"] * (len(cols) + 1))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO users_t (ord, {quoted}) VALUES ({marks})", rows)
            sql, params = to_sql(rule, registry=REGISTRY, dialect="postgres")
            cur.execute(f"SELECT ord FROM users_t WHERE {sql} ORDER BY 1", params)
            got = [r[0] for r in cur.fetchall()]
        conn.rollback()
    assert got == expected, (to_text(rule), sql, params)
