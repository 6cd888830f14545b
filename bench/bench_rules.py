"""Benchmark: one 5-clause rule through the three evaluators on the same generated users.

Prints per-user cost of the compiled rule (ns/user, over every user) beside the tree-walking
interpreter (the baseline), bitmap evaluation p50/p99 on the reference ``MemoryBitmapIndex``, and
the same rule as a DuckDB query over the same data (p50), asserting that all counts are equal.
Run: ``python bench/bench_rules.py --users 1000000``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from adtarget.rules.eval_bitmap import MemoryBitmapIndex, count, evaluate
from adtarget.rules.eval_python import _interpret, compile_rule
from adtarget.rules.eval_sql import to_sql
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec, make_registry

COUNTRIES = ["US", "CA", "GB", "DE", "FR", "ES", "IT", "BR", "MX", "JP"]
DEVICES = ["tv", "mobile", "web", "tablet", "console"]
PLANS = ["free", "basic", "standard", "premium"]
GENRES = ["scifi", "drama", "comedy", "horror", "docs", "kids", "anime", "sports", "news"]
LANGS = ["en", "es", "fr", "de", "it", "pt", "ja"]
RULE_TEXT = (
    'country in ("US", "CA", "GB") and device in ("tv", "mobile") and age between 18 and 34'
    ' and genres has any ("scifi", "drama") and not premium = true'
)
REGISTRY = make_registry(
    [
        DimensionSpec("country", "category"),
        DimensionSpec("device", "category"),
        DimensionSpec("plan", "category"),
        DimensionSpec("age", "number"),
        DimensionSpec("premium", "bool"),
        DimensionSpec("genres", "set"),
        DimensionSpec("languages", "set"),
    ]
)
CHUNK = 100_000


def _category(rng: np.random.Generator, names: list[str], n: int) -> pa.Array:
    codes = rng.integers(0, len(names), size=n).astype(np.int32)
    mask = rng.random(n) < 0.05  # 5% missing
    return pa.array(names).take(pa.array(codes, mask=mask))


def _set(rng: np.random.Generator, names: list[str], n: int, max_len: int) -> pa.Array:
    lengths = rng.integers(0, max_len + 1, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = pa.array(names).take(pa.array(rng.integers(0, len(names), size=int(offsets[-1]))))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def make_users(n: int, seed: int = 7) -> pa.Table:
    """Seven dimensions: 3 category, 1 number, 1 bool, 2 sets; some values missing or empty."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(13, 80, size=n)
    return pa.table(
        {
            "country": _category(rng, COUNTRIES, n),
            "device": _category(rng, DEVICES, n),
            "plan": _category(rng, PLANS, n),
            "age": pa.array(ages, mask=rng.random(n) < 0.05),
            "premium": pa.array(rng.random(n) < 0.3, mask=rng.random(n) < 0.02),
            "genres": _set(rng, GENRES, n, 3),
            "languages": _set(rng, LANGS, n, 2),
        }
    )


def iter_rows(table: pa.Table) -> Iterator[list[dict[str, Any]]]:
    """Feature dicts in chunks (sets as frozensets), so 1M users never sit in memory at once."""
    for batch in table.to_batches(max_chunksize=CHUNK):
        rows = batch.to_pylist()
        for row in rows:
            for dim in ("genres", "languages"):
                if row[dim] is not None:
                    row[dim] = frozenset(row[dim])
        yield rows


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(users: int, *, bitmap_runs: int = 50, sql_runs: int = 10) -> dict[str, float]:
    rule = parse(RULE_TEXT)
    table = make_users(users)

    fn = compile_rule(rule)
    compiled_s = 0.0
    interp_s = 0.0
    py_count = 0
    interp_count = 0
    for rows in iter_rows(table):
        t0 = time.perf_counter()
        py_count += sum(1 for r in rows if fn(r))
        compiled_s += time.perf_counter() - t0
        sample = rows[: max(1, len(rows) // 10)]  # interpreter on 10%: it is the slow baseline
        t0 = time.perf_counter()
        interp_count += sum(1 for r in sample if _interpret(rule, r))
        interp_s += time.perf_counter() - t0
    sampled = sum(max(1, min(CHUNK, users - i) // 10) for i in range(0, users, CHUNK))
    ns_user = compiled_s / users * 1e9
    ns_interp = interp_s / sampled * 1e9

    t0 = time.perf_counter()
    index = MemoryBitmapIndex.from_arrow(table, REGISTRY)
    build_s = time.perf_counter() - t0
    bm_count = count(rule, index)
    assert len(evaluate(rule, index)) == bm_count
    timings = []
    for _ in range(bitmap_runs):
        t0 = time.perf_counter()
        count(rule, index)
        timings.append(time.perf_counter() - t0)
    bm_p50, bm_p99 = _pct(timings, 0.5), _pct(timings, 0.99)

    con = duckdb.connect(":memory:")
    con.register("users_arrow", table)
    con.execute("CREATE TABLE users AS SELECT * FROM users_arrow")  # native storage: fair baseline
    con.unregister("users_arrow")
    sql, params = to_sql(rule, registry=REGISTRY)
    query = f"SELECT count(*) FROM users WHERE {sql}"
    row = con.execute(query, params).fetchone()
    sql_count = int(row[0]) if row else -1
    sql_times = []
    for _ in range(sql_runs):
        t0 = time.perf_counter()
        con.execute(query, params).fetchone()
        sql_times.append(time.perf_counter() - t0)
    sql_p50 = statistics.median(sql_times)
    con.close()

    assert py_count == bm_count == sql_count, (py_count, bm_count, sql_count)
    return {
        "users": users,
        "matches": py_count,
        "ns_per_user_compiled": ns_user,
        "ns_per_user_interpreted": ns_interp,
        "bitmap_build_s": build_s,
        "bitmap_p50_ms": bm_p50 * 1e3,
        "bitmap_p99_ms": bm_p99 * 1e3,
        "duckdb_p50_ms": sql_p50 * 1e3,
        "compiled_all_users_ms": compiled_s * 1e3,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--bitmap-runs", type=int, default=50)
    parser.add_argument("--sql-runs", type=int, default=10)
    args = parser.parse_args(argv)
    r = run(args.users, bitmap_runs=args.bitmap_runs, sql_runs=args.sql_runs)
    print(f"rule: {RULE_TEXT}")
    print(f"users: {r['users']:,}  matching: {r['matches']:,} (python = bitmap = duckdb)")
    print(
        f"per-user compiled:     {r['ns_per_user_compiled']:8.0f} ns/user   "
        f"interpreted (baseline): {r['ns_per_user_interpreted']:8.0f} ns/user   "
        f"speed-up x{r['ns_per_user_interpreted'] / r['ns_per_user_compiled']:.1f}"
    )
    print(
        f"bitmap count:          p50 {r['bitmap_p50_ms']:.3f} ms  p99 {r['bitmap_p99_ms']:.3f} ms"
        f"   (index build {r['bitmap_build_s']:.1f} s, reference MemoryBitmapIndex)"
    )
    print(
        f"duckdb count(*) WHERE: p50 {r['duckdb_p50_ms']:.3f} ms   "
        f"bitmap is x{r['duckdb_p50_ms'] / r['bitmap_p50_ms']:.1f} faster; "
        f"compiled per-user over all users takes {r['compiled_all_users_ms']:.0f} ms "
        f"(x{r['compiled_all_users_ms'] / r['bitmap_p50_ms']:.0f} the bitmap p50)"
    )


if __name__ == "__main__":
    main()
