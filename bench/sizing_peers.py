"""The two peers of ``bench_sizing.py``: DuckDB (a scan) and ClickHouse's bitmap pattern (chDB).

ClickHouse's own audience pattern keeps one ``groupBitmap`` state per (dimension, value) and
combines them at query time with ``bitmapAnd``/``bitmapOr``/``bitmapAndnot``. We load the same
Parquet file into chDB, build those states once, and translate each rule's AST into that
combination, so both engines answer the same question. chDB is optional (``pip install
'adtarget[bench]'``); without it the bench says so and skips the column.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from adtarget.rules.ast import (
    And,
    Between,
    Compare,
    HasAll,
    HasAny,
    InList,
    IsMissing,
    Not,
    Or,
    Rule,
)
from adtarget.rules.eval_sql import to_sql
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec


def timed_cpu(fn: Callable[[], int], runs: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU (this thread) seconds per call, and the (last) answer.

    Why CPU too: on a shared box the wall time is mostly the scheduler's; the thread's CPU
    time is the work itself (sizing runs on the calling thread)."""
    wall, cpu, n = [], [], -1
    for _ in range(runs):
        t, c = time.perf_counter(), time.thread_time()
        n = fn()
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - t)
    return wall, cpu, n


def timed(fn: Callable[[], int], runs: int) -> tuple[list[float], int]:
    """Seconds per call and the (last) answer."""
    times, n = [], -1
    for _ in range(runs):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    return times, n


class DuckPeer:
    """The rule as the rule language's own DuckDB WHERE clause over an in-memory table."""

    def __init__(self, data: Path, registry: dict[str, DimensionSpec]) -> None:
        self.registry = registry
        self.con = duckdb.connect()
        self.con.execute(f"CREATE TABLE users AS SELECT * FROM read_parquet('{data}')")

    def count(self, rule_text: str) -> int:
        where, params = to_sql(parse(rule_text), registry=self.registry, dialect="duckdb")
        row = self.con.execute(f"SELECT count(*) FROM users WHERE {where}", params).fetchone()
        assert row is not None
        return int(row[0])


def _q(v: Any) -> str:
    if isinstance(v, bool):
        return "'true'" if v else "'false'"
    if isinstance(v, int | float):
        return repr(float(v))
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


class ChBitmapPeer:
    """ClickHouse's bitmap pattern in chDB over the same data (built once, then queried)."""

    def __init__(self, data: Path, registry: dict[str, DimensionSpec]) -> None:
        from chdb import session  # optional bench dependency, imported here only

        self.registry = registry
        self.s = session.Session()  # type: ignore[no-untyped-call]
        q: Callable[..., Any] = self.s.query
        q("CREATE DATABASE IF NOT EXISTS b")
        q(
            "CREATE TABLE b.users ENGINE = MergeTree ORDER BY tuple() AS "
            f"SELECT toUInt32(rowNumberInAllBlocks()) AS ord, * FROM file('{data}', Parquet)"
        )
        bm = "AggregateFunction(groupBitmap, UInt32)"
        q(
            f"CREATE TABLE b.bm (dim String, val String, users {bm}) "
            "ENGINE = MergeTree ORDER BY (dim, val)"
        )
        q(
            f"CREATE TABLE b.nbm (dim String, num Float64, users {bm}) "
            "ENGINE = MergeTree ORDER BY (dim, num)"
        )
        q(f"CREATE TABLE b.present (dim String, users {bm}) ENGINE = MergeTree ORDER BY dim")
        q(f"CREATE TABLE b.uni (users {bm}) ENGINE = MergeTree ORDER BY tuple()")
        q("INSERT INTO b.uni SELECT groupBitmapState(ord) FROM b.users")
        for name, spec in registry.items():
            col = f"`{name}`"
            if spec.type == "set":
                q(
                    f"INSERT INTO b.bm SELECT '{name}', v, groupBitmapState(ord) FROM "
                    f"(SELECT ord, arrayJoin({col}) AS v FROM b.users) GROUP BY v"
                )
                q(
                    f"INSERT INTO b.present SELECT '{name}', groupBitmapState(ord) FROM b.users "
                    f"WHERE notEmpty({col})"
                )
                continue
            if spec.type == "number":
                q(
                    f"INSERT INTO b.nbm SELECT '{name}', toFloat64({col}), groupBitmapState(ord) "
                    f"FROM b.users WHERE {col} IS NOT NULL GROUP BY {col}"
                )
            else:
                q(
                    f"INSERT INTO b.bm SELECT '{name}', toString({col}), groupBitmapState(ord) "
                    f"FROM b.users WHERE {col} IS NOT NULL GROUP BY {col}"
                )
            q(
                f"INSERT INTO b.present SELECT '{name}', groupBitmapState(ord) FROM b.users "
                f"WHERE {col} IS NOT NULL"
            )

    def _vals(self, dim: str, values: tuple[Any, ...]) -> str:
        if self.registry[dim].type == "number":
            return self._range(dim, f"num IN ({', '.join(_q(v) for v in values)})")
        vals = ", ".join(_q(v) for v in values)
        return (
            f"(SELECT groupBitmapOrState(users) FROM b.bm WHERE dim = '{dim}' AND val IN ({vals}))"
        )

    def _range(self, dim: str, cond: str) -> str:
        return f"(SELECT groupBitmapOrState(users) FROM b.nbm WHERE dim = '{dim}' AND {cond})"

    def _not(self, x: str) -> str:
        return f"bitmapAndnot((SELECT users FROM b.uni), {x})"

    def expr(self, r: Rule) -> str:
        """The rule as a combination of stored bitmap states."""
        if isinstance(r, And | Or):
            fn = "bitmapAnd" if isinstance(r, And) else "bitmapOr"
            parts = [self.expr(c) for c in r.children]
            acc = parts[0]
            for p in parts[1:]:
                acc = f"{fn}({acc}, {p})"
            return acc
        if isinstance(r, Not):
            return self._not(self.expr(r.child))
        if isinstance(r, Compare):
            if r.op in ("=", "!="):
                eq = self._vals(r.dim, (r.value,))
                return eq if r.op == "=" else self._not(eq)
            return self._range(r.dim, f"num {r.op} {_q(r.value)}")
        if isinstance(r, Between):
            return self._range(r.dim, f"num >= {_q(r.low)} AND num <= {_q(r.high)}")
        if isinstance(r, InList):
            x = self._vals(r.dim, r.values)
            return self._not(x) if r.negated else x
        if isinstance(r, HasAny):
            return self._vals(r.dim, r.values)
        if isinstance(r, HasAll):
            parts = [self._vals(r.dim, (v,)) for v in r.values]
            acc = parts[0]
            for p in parts[1:]:
                acc = f"bitmapAnd({acc}, {p})"
            return acc
        if isinstance(r, IsMissing):
            present = f"(SELECT users FROM b.present WHERE dim = '{r.dim}')"
            return present if r.negated else self._not(present)
        raise TypeError(f"no bitmap-pattern form for {r!r}")

    def count(self, rule_text: str) -> int:
        sql = f"SELECT bitmapCardinality({self.expr(parse(rule_text))})"
        query: Callable[..., Any] = self.s.query
        return int(str(query(sql, "CSV")).strip())


def chdb_available() -> bool:
    """Whether the optional chDB peer can run."""
    try:
        import chdb  # noqa: F401
    except ImportError:
        return False
    return True


def pct(times: list[float], q: float) -> float:
    """Percentile in milliseconds."""
    return float(np.percentile(times, q)) * 1000
