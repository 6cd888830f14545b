"""Benchmark: size a list of rules over a generated population, in process and over HTTP.

Builds the population (shape from the command line: users, distinct countries/ages/watch-hour
values, an optional sort that makes runs) as Parquet, ingests it into a snapshot (timed beside
a pyarrow read of the file, the floor), then for each rule prints in-process p50/p99 (sub-
expression cache off: every call evaluates every clause; ``roar cpu``: the same call with the
dense path off, Roaring only — the same-run baseline), HTTP p50/p99 against a running
``adtarget serve`` (keep-alive client, cache off), DuckDB and ClickHouse's bitmap pattern via
chDB on the same data, with counts checked equal. Then: the API's fixed cost over a hello-world
route of the same app, a builder typing (one clause changed per call, cache on), and the
overlap of 20 audiences.

    python bench/bench_sizing.py --users 10000000 [--ages 78 --hours 1000 --sort-by country]
    python bench/bench_sizing.py --users 1000000 --rule 'age between 18 and 34'
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adtarget.audience.build import SnapshotBuilder  # noqa: E402
from adtarget.audience.service import overlap_rules, size_rule  # noqa: E402
from adtarget.audience.snapshot import Snapshot  # noqa: E402
from adtarget.audience.store import SnapshotStore  # noqa: E402
from population7 import GENRES, REGISTRY, RULE, generate  # noqa: E402,F401  (bench_shards)
from sizing_data import REGISTRY as SHAPE_REGISTRY  # noqa: E402
from sizing_data import RULES, Shape  # noqa: E402
from sizing_data import generate as generate_shape  # noqa: E402
from sizing_peers import ChBitmapPeer, DuckPeer, chdb_available, pct, timed, timed_cpu  # noqa: E402
from sizing_targets import RuleRow, verdict  # noqa: E402


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(data: Path, root: Path, layout: str | None) -> tuple[SnapshotStore, float]:
    """Parquet batches straight into the builder (the path ingest takes after validation)."""
    shutil.rmtree(root, ignore_errors=True)
    store = SnapshotStore(root)
    t = time.perf_counter()
    builder = SnapshotBuilder(
        store=store, base=None, registry=SHAPE_REGISTRY, mode="replace", number_layout=layout
    )
    keep = ["country", "plan", "devices.list.element", "genres.list.element"]
    for batch in pq.ParquetFile(data, read_dictionary=keep).iter_batches(batch_size=1_000_000):
        builder.add_batch(batch)
    store.publish(builder.finish())
    return store, time.perf_counter() - t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``adtarget serve`` on a free loopback port over the bench's data dir (cache off)."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "ADTARGET_DATA_DIR": str(data_dir),
            "ADTARGET_SIZING_CACHE": "false",
            "ADTARGET_MIN_AUDIENCE_SIZE": "0",
        }
        env.pop("ADTARGET_ADMIN_KEY", None)
        exe = Path(sys.executable).with_name("adtarget")
        self.proc = subprocess.Popen(
            [str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        deadline = time.time() + 60
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("adtarget serve did not start")
            time.sleep(0.1)

    def size(self, rule: str) -> int:
        r = self.client.post("/v1/audiences/size", json={"rule": rule})
        r.raise_for_status()
        return int(r.json()["count"])

    def hello(self) -> int:
        return self.client.get("/healthz").status_code

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--countries", type=int, default=20)
    ap.add_argument("--ages", type=int, default=78, help="distinct ages (few-valued number)")
    ap.add_argument("--hours", type=int, default=1000, help="distinct watch-hour values")
    ap.add_argument("--sort-by", default=None, help="sort each 1M rows by a column (runs)")
    ap.add_argument("--layout", default=None, choices=["range", "buckets", "bsi"])
    ap.add_argument("--rule", action="append", help="size this rule (repeat); default: the list")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--peer-queries", type=int, default=5)
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--no-chdb", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="keep population.parquet in --workdir")
    args = ap.parse_args(argv)
    shape = Shape(args.users, args.countries, args.ages, args.hours, args.sort_by)
    rules: list[str] = args.rule or RULES
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-sizing-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "population.parquet"
    t = time.perf_counter()
    if not (args.reuse and data.exists()):
        generate_shape(data, shape)
    print(f"generated {shape} in {time.perf_counter() - t:.1f}s -> {data}")

    t = time.perf_counter()
    pq.read_table(data)
    floor_s = time.perf_counter() - t
    rss_floor = peak_rss_mb()
    store, build_s = build(data, work / "snapshots", args.layout)
    print(
        f"build  {args.users:,} users: {build_s:.2f}s ({args.users / build_s:,.0f} rows/s), "
        f"peak RSS {peak_rss_mb():,.0f} MB (after the pyarrow read {rss_floor:,.0f} MB); "
        f"pyarrow read {floor_s:.2f}s, build/read {build_s / floor_s:.1f}x"
    )
    snap = store.current()
    assert isinstance(snap, Snapshot)  # one process's snapshot: its dims and index are read
    layouts = {n: d.layout for n, d in snap.dims.items() if d.type == "number"}
    print(f"layouts {layouts}; distinct { ({n: snap.dims[n].num_values for n in layouts}) }")
    for name, d in snap.dims.items():
        size = os.path.getsize(snap.path / f"{d.slot}.bm.bin")
        print(f"       {name:<12} bitmaps {size / 2**20:8.1f} MB")

    duck = DuckPeer(data, SHAPE_REGISTRY)
    ch = None
    if not args.no_chdb and chdb_available():
        t = time.perf_counter()
        ch = ChBitmapPeer(data, SHAPE_REGISTRY)
        print(f"chdb   bitmap states built in {time.perf_counter() - t:.1f}s")
    elif not args.no_chdb:
        print("chdb   not installed (pip install 'adtarget[bench]'): column skipped")
    server = None if args.no_http else Server(work)
    mismatch = False
    worst50 = worst99 = 0.0
    rows: list[RuleRow] = []
    fixed: float | None = None
    try:
        print(
            f"{'rule':<4} {'count':>10} {'p50 ms':>8} {'p99 ms':>8} {'cpu p50':>8} {'roar cpu':>8} "
            f"{'http p50':>9} "
            f"{'http p99':>9} {'duckdb':>8} {'chdb bm':>8} {'x duck':>7} {'x chdb':>7}"
        )
        for i, rule in enumerate(rules):
            size_rule(snapshot=snap, rule_text=rule, min_size=0, use_cache=False)  # warm
            times, cpu, n = timed_cpu(
                lambda r=rule: size_rule(  # type: ignore[misc]
                    snapshot=snap, rule_text=r, min_size=0, use_cache=False
                )["count"],
                args.queries,
            )
            p50, p99 = pct(times, 50), pct(times, 99)
            snap.index.dense_enabled = False  # same run, Roaring only: the baseline
            rt, rcpu, rn = timed_cpu(
                lambda r=rule: size_rule(  # type: ignore[misc]
                    snapshot=snap, rule_text=r, min_size=0, use_cache=False
                )["count"],
                args.queries,
            )
            snap.index.dense_enabled = True
            roaring50 = pct(rcpu, 50)
            counts_r = {rn}
            worst50, worst99 = max(worst50, p50), max(worst99, p99)
            counts = {n} | counts_r
            h50 = h99 = float("nan")
            if server is not None:
                server.size(rule)
                ht, hn = timed(lambda r=rule: server.size(r), args.queries)  # type: ignore[misc]
                h50, h99 = pct(ht, 50), pct(ht, 99)
                counts.add(hn)
            dt, dn = timed(lambda r=rule: duck.count(r), args.peer_queries)  # type: ignore[misc]
            counts.add(dn)
            c50 = float("nan")
            if ch is not None:
                ct, cn = timed(lambda r=rule: ch.count(r), args.peer_queries)  # type: ignore[misc]
                c50 = pct(ct, 50)
                counts.add(cn)
            d50 = pct(dt, 50)
            rows.append(RuleRow(f"R{i + 1}", p50, p99, h50, h99, c50, pct(cpu, 50), pct(cpu, 99)))
            print(
                f"R{i + 1:<3} {n:>10,} {p50:8.3f} {p99:8.3f} {pct(cpu, 50):8.3f} {roaring50:8.3f} "
                f"{h50:9.3f} {h99:9.3f} "
                f"{d50:8.1f} {c50:8.1f} {d50 / p50:7.0f} {c50 / p50:7.0f}"
            )
            if len(counts) != 1:
                mismatch = True
                print(f"COUNT MISMATCH R{i + 1} {counts}", file=sys.stderr)
        for i, rule in enumerate(rules):
            print(f"R{i + 1:<3} {rule}")
        print(f"worst rule: p50 {worst50:.3f} ms, p99 {worst99:.3f} ms (in process, cache off)")
        if server is not None:
            hello, _ = timed(server.hello, args.queries)
            cheap = 'plan = "ads"'
            inproc, _ = timed(
                lambda: size_rule(snapshot=snap, rule_text=cheap, min_size=0, use_cache=False)[
                    "count"
                ],
                args.queries,
            )
            http, _ = timed(lambda: server.size(cheap), args.queries)
            fixed = pct(http, 50) - pct(inproc, 50) - pct(hello, 50)
            print(
                f"api    hello-world GET /healthz p50 {pct(hello, 50):.3f} ms; size {cheap!r} "
                f"http p50 {pct(http, 50):.3f} ms, in process {pct(inproc, 50):.3f} ms: fixed "
                f"cost over hello-world {fixed:.3f} ms"
            )
        _typing(snap, args.queries)
        over = [rules[i % len(rules)] + f" and age >= {13 + i}" for i in range(20)]
        overlap_rules(snapshot=snap, rules=over, min_size=0, use_cache=False)
        ot, oc, _ = timed_cpu(
            lambda: len(overlap_rules(snapshot=snap, rules=over, min_size=0, use_cache=False)),
            max(3, args.queries // 20),
        )
        snap.index.dense_enabled = False  # the same matrix through Roaring only: the baseline
        rt, rc, _ = timed_cpu(
            lambda: len(overlap_rules(snapshot=snap, rules=over, min_size=0, use_cache=False)),
            max(3, args.queries // 20),
        )
        snap.index.dense_enabled = True
        print(
            f"overlap 20 audiences (20x20 matrix, cache off): p50 {pct(ot, 50):.1f} ms, "
            f"CPU p50 {pct(oc, 50):.1f} ms (Roaring only: CPU p50 {pct(rc, 50):.1f} ms)"
        )
        print("\n".join(verdict(rows, fixed, pct(ot, 50))))
    finally:
        if server is not None:
            server.close()
    return 1 if mismatch else 0


def _typing(snap: object, queries: int) -> None:
    """A builder types: the issue's rule with its age bounds moving, cache on vs off."""
    base = RULES[0].replace("age between 18 and 34", "age between 18 and {hi}")
    variants = [base.format(hi=20 + (i % 50)) for i in range(queries)]
    for use_cache in (False, True):
        times = []
        for rule in variants:
            t = time.perf_counter()
            size_rule(snapshot=snap, rule_text=rule, min_size=0, use_cache=use_cache)  # type: ignore[arg-type]
            times.append(time.perf_counter() - t)
        print(
            f"typing one clause changed per call, cache {'on ' if use_cache else 'off'}: "
            f"p50 {pct(times, 50):.3f} ms, p99 {pct(times, 99):.3f} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
