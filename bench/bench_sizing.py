"""Benchmark: build a snapshot from a generated population, then size a 5-clause rule.

Prints ingest rows/s and peak RSS beside a plain ``pyarrow.parquet.read_table`` of the same
file (the floor), and sizing p50/p99 beside the same rule as a DuckDB query over the same
Parquet file and over a DuckDB in-memory table, asserting equal counts; and the index size
on disk and a reader process's RSS. Run: ``python bench/bench_sizing.py --users 10000000``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
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

COUNTRIES = [
    "US",
    "CA",
    "GB",
    "DE",
    "FR",
    "ES",
    "IT",
    "BR",
    "MX",
    "JP",
    "KR",
    "IN",
    "AU",
    "NL",
    "SE",
    "NO",
    "PL",
    "AR",
    "CL",
    "ZA",
]
PLANS = ["free", "basic", "standard", "premium"]
DEVICES = ["tv", "mobile", "web", "tablet", "console", "stick"]
GENRES = [
    "scifi",
    "drama",
    "comedy",
    "horror",
    "docs",
    "kids",
    "anime",
    "sports",
    "news",
    "romance",
    "thriller",
    "crime",
    "fantasy",
    "history",
    "music",
    "reality",
    "war",
    "western",
    "family",
    "mystery",
]
LANGS = ["en", "es", "fr", "de", "it", "pt", "ja", "ko", "hi", "nl"]
RULE = (
    'country in ("US", "CA", "GB") and device in ("tv", "mobile") and age between 18 and 34'
    ' and genres has any ("scifi", "drama") and not premium = true'
)
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
        table = pa.table(
            {
                "user_id": ids,
                "country": _category(rng, COUNTRIES, n, 0.02),
                "plan": _category(rng, PLANS, n, 0.0),
                "device": _category(rng, DEVICES, n, 0.05),
                "age": pa.array(rng.integers(18, 81, size=n), mask=rng.random(n) < 0.03),
                "premium": pa.array(rng.random(n) < 0.3, mask=rng.random(n) < 0.01),
                "genres": _set(rng, GENRES, n, 4),
                "languages": _set(rng, LANGS, n, 2),
            }
        )
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(str(path), schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (the snapshot as stored)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


READER = """
import json, sys, time
from pathlib import Path
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
from adtarget.audience.service import size_rule
from adtarget.audience.store import SnapshotStore
base = rss()
snap = SnapshotStore(Path(sys.argv[1])).current()
opened = rss()
for _ in range(20):
    r = size_rule(snapshot=snap, rule_text=sys.argv[2], min_size=0)
print(json.dumps({"base": base, "opened": opened, "queried": rss(), "count": r["count"]}))
"""


def reader_rss(snapshots: Path) -> dict[str, int]:
    """RSS of a fresh reader process: after imports, after opening, after sizing the rule."""
    out = subprocess.run(
        [sys.executable, "-c", READER, str(snapshots), RULE],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def pct(times: list[float], q: float) -> float:
    """Percentile in milliseconds."""
    return float(np.percentile(times, q)) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--duckdb-queries", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep an existing population.parquet in --workdir (profiling)",
    )
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-sizing-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "population.parquet"
    t = time.perf_counter()
    if not (args.reuse and data.exists()):
        generate(data, args.users)
    print(f"generated {args.users:,} users in {time.perf_counter() - t:.1f}s -> {data}")

    rss0 = peak_rss_mb()
    t = time.perf_counter()
    floor_rows = pq.read_table(data).num_rows
    floor_s = time.perf_counter() - t
    rss_floor = peak_rss_mb()
    print(
        f"floor  pyarrow.parquet.read_table: {floor_s:.2f}s "
        f"({floor_rows / floor_s:,.0f} rows/s), peak RSS {rss_floor:,.0f} MB"
    )

    # The ingest module's readers/validators are not used here: batches go straight from
    # Parquet into the builder (the path ingest takes after validation). Text columns are
    # read dictionary-encoded, as they are stored, so they are never expanded to strings.
    shutil.rmtree(work / "snapshots", ignore_errors=True)
    store = SnapshotStore(work / "snapshots")
    t = time.perf_counter()
    builder = SnapshotBuilder(store=store, base=None, registry=REGISTRY, mode="replace")
    keep_dict = ["country", "plan", "device", "genres.list.element", "languages.list.element"]
    for batch in pq.ParquetFile(data, read_dictionary=keep_dict).iter_batches(batch_size=1_000_000):
        builder.add_batch(batch)
    version = store.publish(builder.finish())
    build_s = time.perf_counter() - t
    print(
        f"build  snapshot {version}: {build_s:.2f}s ({args.users / build_s:,.0f} rows/s), "
        f"peak RSS {peak_rss_mb():,.0f} MB (before build {max(rss0, rss_floor):,.0f} MB); "
        f"{build_s / floor_s:.1f}x the pyarrow read"
    )

    snapshot = store.current()
    assert snapshot is not None
    result = size_rule(snapshot=snapshot, rule_text=RULE, registry=REGISTRY, min_size=0)
    timings = []
    for _ in range(args.queries):
        t = time.perf_counter()
        result = size_rule(snapshot=snapshot, rule_text=RULE, registry=REGISTRY, min_size=0)
        timings.append(time.perf_counter() - t)
    p50, p99 = pct(timings, 50), pct(timings, 99)

    # The same rule as SQL (the rule language's own DuckDB translation), run on the same data
    # twice: straight over the Parquet file, and over a DuckDB in-memory table (its best case).
    where, params = to_sql(parse(RULE), registry=REGISTRY, dialect="duckdb")
    con = duckdb.connect()
    con.execute(f"CREATE TABLE users AS SELECT * FROM read_parquet('{data}')")
    duck: dict[str, tuple[float, float, int]] = {}
    for label, source in (("parquet", f"read_parquet('{data}')"), ("table", "users")):
        sql = f"SELECT count(*) FROM {source} WHERE {where}"
        times = []
        n = -1
        for _ in range(args.duckdb_queries):
            t = time.perf_counter()
            n = con.execute(sql, params).fetchone()[0]  # type: ignore[index]
            times.append(time.perf_counter() - t)
        duck[label] = (pct(times, 50), pct(times, 99), n)
    con.close()

    disk = dir_bytes(snapshot.path)
    rss = reader_rss(work / "snapshots")
    per10m = 10_000_000 / max(args.users, 1)
    print(f"size   {RULE}")
    print(
        f"       adtarget p50 {p50:.3f} ms, p99 {p99:.3f} ms, count {result['count']:,}"
        f"  ({args.queries} queries)"
    )
    for label, (d50, d99, n) in duck.items():
        print(
            f"       duckdb {label:<7} p50 {d50:.1f} ms, p99 {d99:.1f} ms, count {n:,}"
            f"  ({args.duckdb_queries} queries); ratio {d50 / p50:,.0f}x faster than DuckDB"
        )
    print(
        f"memory index on disk {disk / 2**20:,.1f} MB "
        f"({disk * per10m / 2**20:,.0f} MB per 10M users); reader process RSS "
        f"{rss['base'] / 2**20:,.0f} MB after imports, {rss['opened'] / 2**20:,.0f} MB "
        f"after opening, {rss['queried'] / 2**20:,.0f} MB after sizing "
        f"(+{(rss['queried'] - rss['base']) * per10m / 2**20:,.0f} MB per 10M users)"
    )
    counts = {result["count"], rss["count"], *(n for _, _, n in duck.values())}
    if len(counts) != 1:
        print(f"COUNT MISMATCH {counts}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
