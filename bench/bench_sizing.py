"""Benchmark: build a snapshot from a generated population, then size a 5-clause rule.

Prints ingest rows/s and peak RSS beside a plain ``pyarrow.parquet.read_table`` of the same
file (the floor), and sizing p50/p99 beside the same rule as a DuckDB query over the same
Parquet file, asserting equal counts. Run: ``python bench/bench_sizing.py --users 10000000``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adtarget.audience.build import SnapshotBuilder
from adtarget.audience.service import size_rule
from adtarget.audience.store import SnapshotStore
from adtarget.rules.eval_sql import to_sql
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec

COUNTRIES = ["US", "CA", "GB", "DE", "FR", "ES", "IT", "BR", "MX", "JP", "KR", "IN", "AU", "NL",
             "SE", "NO", "PL", "AR", "CL", "ZA"]
PLANS = ["free", "basic", "standard", "premium"]
DEVICES = ["tv", "mobile", "web", "tablet", "console", "stick"]
GENRES = ["scifi", "drama", "comedy", "horror", "docs", "kids", "anime", "sports", "news",
          "romance", "thriller", "crime", "fantasy", "history", "music", "reality", "war",
          "western", "family", "mystery"]
LANGS = ["en", "es", "fr", "de", "it", "pt", "ja", "ko", "hi", "nl"]
RULE = ('country in ("US", "CA", "GB") and device in ("tv", "mobile") and age between 18 and 34'
        ' and genres has any ("scifi", "drama") and not premium = true')
REGISTRY = {
    "country": DimensionSpec("country", "category"),
    "plan": DimensionSpec("plan", "category"),
    "device": DimensionSpec("device", "category"),
    "age": DimensionSpec("age", "number"),
    "premium": DimensionSpec("premium", "bool"),
    "genres": DimensionSpec("genres", "set"),
    "languages": DimensionSpec("languages", "set"),
}


def _category(rng: np.random.Generator, names: list[str], n: int, null_rate: float) -> pa.Array:
    weights = 1.0 / np.arange(1, len(names) + 1)
    codes = rng.choice(len(names), size=n, p=weights / weights.sum()).astype(np.int32)
    mask = rng.random(n) < null_rate
    return pa.array(names).take(pa.array(codes, mask=mask))


def _set(rng: np.random.Generator, names: list[str], n: int, max_len: int) -> pa.Array:
    lengths = rng.integers(0, max_len + 1, size=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = pa.array(names).take(pa.array(rng.integers(0, len(names), size=int(offsets[-1]))))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def generate(path: Path, users: int, seed: int = 7) -> None:
    """Write the 7-dimension population as Parquet, in row groups of 1M."""
    rng = np.random.default_rng(seed)
    schema = None
    writer = None
    for start in range(0, users, 1_000_000):
        n = min(1_000_000, users - start)
        ids = pc.binary_join_element_wise(
            "u", pc.cast(pa.array(rng.permutation(n) + start), pa.string()), ""
        )
        table = pa.table({
            "user_id": ids,
            "country": _category(rng, COUNTRIES, n, 0.02),
            "plan": _category(rng, PLANS, n, 0.0),
            "device": _category(rng, DEVICES, n, 0.05),
            "age": pa.array(rng.integers(18, 81, size=n), mask=rng.random(n) < 0.03),
            "premium": pa.array(rng.random(n) < 0.3, mask=rng.random(n) < 0.01),
            "genres": _set(rng, GENRES, n, 4),
            "languages": _set(rng, LANGS, n, 2),
        })
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(str(path), schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--duckdb-queries", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-sizing-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "population.parquet"
    t = time.perf_counter()
    generate(data, args.users)
    print(f"generated {args.users:,} users in {time.perf_counter() - t:.1f}s -> {data}")

    rss0 = peak_rss_mb()
    t = time.perf_counter()
    floor_rows = pq.read_table(data).num_rows
    floor_s = time.perf_counter() - t
    rss_floor = peak_rss_mb()
    print(f"floor  pyarrow.parquet.read_table: {floor_s:.2f}s "
          f"({floor_rows / floor_s:,.0f} rows/s), peak RSS {rss_floor:,.0f} MB")

    # The ingest module's readers/validators are not used here: batches go straight from
    # Parquet into the builder (the path ingest takes after validation). Text columns are
    # read dictionary-encoded, as they are stored, so they are never expanded to strings.
    store = SnapshotStore(work / "snapshots")
    t = time.perf_counter()
    builder = SnapshotBuilder(store=store, base=None, registry=REGISTRY, mode="replace")
    keep_dict = ["country", "plan", "device", "genres.list.element", "languages.list.element"]
    for batch in pq.ParquetFile(data, read_dictionary=keep_dict).iter_batches(
        batch_size=1_000_000
    ):
        builder.add_batch(batch)
    version = store.publish(builder.finish())
    build_s = time.perf_counter() - t
    print(f"build  snapshot {version}: {build_s:.2f}s ({args.users / build_s:,.0f} rows/s), "
          f"peak RSS {peak_rss_mb():,.0f} MB (before build {max(rss0, rss_floor):,.0f} MB); "
          f"{build_s / floor_s:.1f}x the pyarrow read")

    snapshot = store.current()
    assert snapshot is not None
    timings = []
    result = size_rule(snapshot=snapshot, rule_text=RULE, registry=REGISTRY, min_size=0)
    for _ in range(args.queries):
        t = time.perf_counter()
        result = size_rule(snapshot=snapshot, rule_text=RULE, registry=REGISTRY, min_size=0)
        timings.append(time.perf_counter() - t)
    p50 = statistics.median(timings) * 1000
    p99 = float(np.percentile(timings, 99)) * 1000

    where, params = to_sql(parse(RULE), registry=REGISTRY, dialect="duckdb")
    con = duckdb.connect()
    sql = f"SELECT count(*) FROM read_parquet('{data}') WHERE {where}"
    duck_times = []
    duck_count = None
    for _ in range(args.duckdb_queries):
        t = time.perf_counter()
        duck_count = con.execute(sql, params).fetchone()[0]  # type: ignore[index]
        duck_times.append(time.perf_counter() - t)
    duck_p50 = statistics.median(duck_times) * 1000
    print(f"size   {RULE}")
    print(f"       adtarget p50 {p50:.3f} ms, p99 {p99:.3f} ms, count {result['count']:,}")
    print(f"       duckdb   p50 {duck_p50:.1f} ms over Parquet, count {duck_count:,}")
    print(f"       ratio {duck_p50 / p50:,.0f}x faster than DuckDB")
    if duck_count != result["count"]:
        print("COUNT MISMATCH", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
