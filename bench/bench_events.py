"""Benchmark: delivery intake of N events (with ~1% duplicates), then a campaign x day report.

Prints events/s accepted through the full intake (validation, dedup index, Parquet append,
rollup update), the report latency (rollups + exact reach from the raw log) beside the same
report as one plain DuckDB query over the raw Parquet log, and asserts both give equal rows.
Run: ``python bench/bench_events.py --events 1000000`` (``--store postgres --pg-url URL`` for
the PostgreSQL store).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from adtarget.delivery.models import EVENT_TYPES
from adtarget.delivery.reports import run_report
from adtarget.delivery.service import ingest_events
from adtarget.delivery.store import EventStore

TYPE_WEIGHTS = np.array([30, 28, 10, 8, 7, 6, 5, 6], dtype=float)
COUNTRIES = ["US", "CA", "GB", "DE", "FR"]
DEVICES = ["tv", "mobile", "web"]


def make_batch(
    rng: np.random.Generator, start: int, n: int, now: datetime, dup_from: int, dup_ratio: float
) -> dict[str, list[Any]]:
    """Columns of events ``start .. start+n``; ``dup_ratio`` of them are re-sent earlier events.

    Every field is a hash of the event number, so a re-sent event is identical to the original.
    """
    num = np.arange(start, start + n, dtype=np.int64)
    n_dup = int(n * dup_ratio) if dup_from < start else 0
    if n_dup:
        num[:n_dup] = rng.integers(dup_from, start, n_dup)
    h = (num * 2654435761) % 4294967296
    li = h % 400
    camp = li // 4
    cum = np.cumsum(TYPE_WEIGHTS) / TYPE_WEIGHTS.sum()
    types = np.searchsorted(cum, (h >> 9) % 10_000 / 10_000, side="right")
    users = (h >> 3) % 200_000
    stamps = np.datetime64(now.replace(tzinfo=None), "s") - ((h >> 5) % (7 * 86400)).astype(
        "timedelta64[s]"
    )
    return {
        "event_id": [f"ev{i}" for i in num],
        "type": [EVENT_TYPES[t] for t in types],
        "ts": list(np.datetime_as_string(stamps, unit="s", timezone="UTC")),
        "user_id": [f"u{u}" for u in users],
        "line_item_id": [f"li{x}" for x in li],
        "campaign_id": [f"c{x}" for x in camp],
        "advertiser_id": [f"a{x // 5}" for x in camp],
        "creative_id": [f"cr{x % 3}" for x in h],
        "country": [COUNTRIES[x % 5] for x in users],
        "device": [DEVICES[x % 3] for x in users],
        "cost": np.where(types == 1, 0.005, 0.0).tolist(),
    }


def open_store(kind: str, root: Path, pg_url: str | None) -> EventStore:
    if kind == "postgres":
        from adtarget.delivery.postgres import PostgresEventStore

        if not pg_url:
            sys.exit("--pg-url is required with --store postgres")
        return PostgresEventStore(pg_url)
    from adtarget.delivery.parquet_store import ParquetEventStore

    return ParquetEventStore(root / "events")


def baseline_sql(files: str, start: str, end: str) -> str:
    return f"""
        SELECT campaign_id, CAST(day AS VARCHAR) AS day,
               count(*) FILTER (WHERE type = 'impression') AS impressions,
               count(*) FILTER (WHERE type = 'click') AS clicks,
               sum(cost_micros) AS spend_micros,
               count(DISTINCT user_id) FILTER (WHERE type = 'impression') AS reach
        FROM read_parquet('{files}', hive_partitioning = false)
        WHERE day >= DATE '{start}' AND day <= DATE '{end}'
        GROUP BY campaign_id, day ORDER BY campaign_id, day"""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--dup-ratio", type=float, default=0.01)
    ap.add_argument("--store", choices=["parquet", "postgres"], default="parquet")
    ap.add_argument("--pg-url")
    ap.add_argument("--dir", type=Path, help="data dir (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-events-"))
    store = open_store(args.store, root, args.pg_url)
    rng = np.random.default_rng(7)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    accepted = duplicates = rejected = 0
    intake = 0.0
    for start in range(0, args.events, args.batch):
        n = min(args.batch, args.events - start)
        cols = make_batch(rng, start, n, now, max(0, start - args.batch), args.dup_ratio)
        t0 = time.perf_counter()
        result = ingest_events(store=store, events=cols, now=now + timedelta(minutes=1))
        intake += time.perf_counter() - t0
        accepted += result.accepted
        duplicates += result.duplicates
        rejected += len(result.rejected)
    sent = accepted + duplicates + rejected
    print(
        f"intake: {sent:,} events sent, {accepted:,} accepted, {duplicates:,} duplicates, "
        f"{rejected} rejected in {intake:.2f} s -> {accepted / intake:,.0f} events/s accepted"
    )
    rollup_rows = store.rollups().num_rows
    print(
        f"hourly rollup rows: {rollup_rows:,} ({rollup_rows / max(accepted, 1):.2f} per event; "
        "this generator spreads events thin, real delivery compresses far more)"
    )

    first, last = (now - timedelta(days=7)).date(), now.date()
    files = str(root / "events" / "day=*" / "part-*.parquet")
    con = duckdb.connect() if args.store == "parquet" else None
    report_times: list[float] = []
    counter_times: list[float] = []
    base_times: list[float] = []
    rows: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    base: list[Any] = []
    # interleaved, so load from other processes on the machine hits all three alike
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rows = run_report(
            store=store,
            start=first,
            end=last,
            group_by="campaign,day",
            metrics="impressions,clicks,spend,reach",
        )
        report_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain = run_report(
            store=store,
            start=first,
            end=last,
            group_by="campaign,day",
            metrics="impressions,clicks,spend",
        )
        counter_times.append(time.perf_counter() - t0)
        if con is not None:
            t0 = time.perf_counter()
            base = con.execute(baseline_sql(files, first.isoformat(), last.isoformat())).fetchall()
            base_times.append(time.perf_counter() - t0)
    ours = [
        (
            r["campaign_id"],
            r["day"],
            r["impressions"],
            r["clicks"],
            round(r["spend"] * 1_000_000),
            r["reach"],
        )
        for r in rows
    ]
    if [(r["campaign_id"], r["day"], r["impressions"], r["clicks"], r["spend"]) for r in plain] != [
        (r["campaign_id"], r["day"], r["impressions"], r["clicks"], r["spend"]) for r in rows
    ]:
        sys.exit("the rollup report differs from the raw-log report")
    base = [tuple(int(v) if i >= 2 else v for i, v in enumerate(r)) for r in base]
    p50 = statistics.median(report_times)
    out: dict[str, Any] = {
        "events": sent,
        "accepted": accepted,
        "duplicates": duplicates,
        "events_per_s": accepted / intake,
        "report_p50_s": p50,
        "rows": len(ours),
        "rollup_report_p50_s": statistics.median(counter_times),
    }
    if base_times:
        b50 = statistics.median(base_times)
        out |= {"duckdb_p50_s": b50, "equal": ours == base}
        print(
            f"report campaign x day (impressions, clicks, spend, reach), {len(ours)} rows: "
            f"{p50 * 1000:.1f} ms p50; plain DuckDB over the raw log: {b50 * 1000:.1f} ms p50 "
            f"-> {b50 / p50:.2f}x; equal: {ours == base}"
        )
        print(
            f"same report without reach (rollups only): "
            f"{out['rollup_report_p50_s'] * 1000:.1f} ms p50 (equal counters: True)"
        )
        if ours != base:
            sys.exit("report differs from the DuckDB baseline")
    else:
        print(f"report campaign x day, {len(ours)} rows: {p50 * 1000:.1f} ms p50")
    store.close()
    return out


if __name__ == "__main__":
    main()
