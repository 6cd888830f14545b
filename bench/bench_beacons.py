"""Beacon intake over HTTP: ``GET /v1/track/{event}/{token}`` against a hello-world app.

Serves a generated catalog with ``adtarget serve`` (as ``bench_http.py`` does), asks for
``--decisions`` decisions to get their signed tracking URLs (seven per ad), then fires those
URLs for ``--seconds`` at ``--concurrency`` connections — each URL several times over, as player
retries would — with wrk when installed (else a bounded asyncio client). Then it checks the
event log counted each distinct URL exactly once (the report's totals per event type), and
serves the hello-world ASGI app with the same load generator and paths, printing both and the
ratio.

    python bench/bench_beacons.py --seconds 10 --concurrency 32

Target (issue 23): >= 10,000 beacons/s with p99 reported. On a 2-core box the load generator
shares the cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http  # noqa: E402
from bench_http import (  # noqa: E402
    build_catalog,
    build_snapshot,
    free_port,
    request_bodies,
    start_adtarget,
    start_hello,
    stop,
    wait_ready,
)

ADMIN = "bench-beacons-admin"


def tracking_paths(port: int, key: str, bodies: list[bytes], n: int) -> list[str]:
    """The root-relative tracking URLs of ``n`` decisions (every event of every ad)."""
    paths: list[str] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
        for i in range(n):
            resp = client.post("/v1/decisions", content=bodies[i % len(bodies)])
            resp.raise_for_status()
            for decision in resp.json()["decisions"]:
                paths.extend(decision["tracking"].values())
    return paths


def run_wrk(
    port: int, seconds: float, concurrency: int, paths: list[str], tmp: Path
) -> dict[str, Any]:
    """``bench_http``'s wrk run, with a script that GETs the tracking paths round-robin."""
    script = tmp / "beacons.lua"
    listed = ",\n".join(f'"{p}"' for p in paths)
    script.write_text(
        f"local paths = {{\n{listed}\n}}\nlocal i = 0\n"
        "request = function()\n  i = (i % #paths) + 1\n"
        '  return wrk.format("GET", paths[i])\nend\n'
    )
    return bench_http.run_wrk(port, seconds, concurrency, script)


async def _client_load(
    port: int, seconds: float, concurrency: int, paths: list[str]
) -> dict[str, Any]:
    latencies: list[float] = []
    bad = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(k: int, client: httpx.AsyncClient) -> None:
        nonlocal bad
        i = k
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            resp = await client.get(paths[i % len(paths)])
            latencies.append(time.perf_counter() - t)
            bad += resp.status_code >= 300
            i += concurrency

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
        await asyncio.gather(*(worker(k, client) for k in range(concurrency)))
    took = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "rps": len(latencies) / took,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "non_2xx": float(bad),
    }


def load(
    port: int, seconds: float, concurrency: int, paths: list[str], tmp: Path
) -> dict[str, Any]:
    """wrk when installed, else the asyncio client (the smoke test's path)."""
    if shutil.which("wrk"):
        return run_wrk(port, seconds, concurrency, paths, tmp)
    return asyncio.run(_client_load(port, seconds, concurrency, paths))


def counted(port: int, key: str) -> dict[str, int]:
    """Events per type in the event log, from ``GET /v1/reports`` (what a user reads)."""
    metrics = "impressions,starts,first_quartiles,midpoints,third_quartiles,completes,clicks"
    resp = httpx.get(
        f"http://127.0.0.1:{port}/v1/reports",
        params={"group_by": "line_item", "metrics": metrics},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    resp.raise_for_status()
    totals = dict.fromkeys(metrics.split(","), 0)
    for row in resp.json()["rows"]:
        for name in totals:
            totals[name] += int(row.get(name) or 0)
    return totals


def settled(
    port: int, key: str, per_event: int, timeout: float = 20.0
) -> tuple[dict[str, Any], float]:
    """The report's totals once the answered beacons reached the event log (the workers move
    them from their write-ahead files in the background), and how long that took."""
    started = time.perf_counter()
    totals, since = counted(port, key), started
    while time.perf_counter() - started < timeout:
        if all(v >= per_event for v in totals.values()):
            break
        time.sleep(0.1)
        again = counted(port, key)
        if again != totals:
            totals, since = again, time.perf_counter()
        elif time.perf_counter() - since > 3.0:  # nothing moved for 3 s: what we have is all
            break
    return totals, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--line-items", type=int, default=1000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--decisions", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="adtarget-bench-beacons-"))
    try:
        data_dir = tmp / "data"
        key = build_catalog(data_dir, args.line_items, args.seed)
        build_snapshot(data_dir, args.users, args.seed)
        bodies = request_bodies(args.users, 256, args.seed)
        port = free_port()
        proc = start_adtarget(data_dir, port, args.workers, {"ADTARGET_ADMIN_KEY": ADMIN})
        try:
            wait_ready(port, "/readyz")
            paths = tracking_paths(port, key, bodies, args.decisions)
            print(
                f"setup: {args.line_items} line items, {args.decisions} decisions -> "
                f"{len(paths):,} tracking URLs; {args.workers} workers, concurrency "
                f"{args.concurrency}, {args.seconds:g} s, load generator: "
                f"{'wrk' if shutil.which('wrk') else 'python asyncio client'}"
            )
            ours = load(port, args.seconds, args.concurrency, paths, tmp)
            fired = sorted({p.split("/")[3] for p in paths})
            per_event = len(paths) // max(1, len(fired))
            totals, lag = settled(port, ADMIN, per_event)
        finally:
            stop(proc)
        exact = (
            all(v == per_event for v in totals.values())
            if ours["rps"] * args.seconds >= len(paths)
            else None
        )
        port = free_port()
        hello = start_hello(port, args.workers)
        try:
            wait_ready(port, "/")
            base = load(port, args.seconds, args.concurrency, paths, tmp)
        finally:
            stop(hello)
        for name, r in (("adtarget /v1/track", ours), ("hello-world ASGI", base)):
            print(
                f"{name:<22} {r['rps']:>10,.0f} req/s   p50 {r['p50_ms']:6.2f} ms   "
                f"p99 {r['p99_ms']:6.2f} ms   non-2xx {r['non_2xx']:.0f}"
            )
        ratio = ours["rps"] / base["rps"] if base["rps"] else float("nan")
        print(f"ratio: beacons = {ratio:.2f} x hello-world throughput (target >= 10,000/s)")
        print(
            f"counted once: {per_event:,} distinct URLs per event type, event log holds "
            + ", ".join(f"{k} {v:,}" for k, v in totals.items())
            + ("" if exact is None else f" -> {'exact' if exact else 'MISMATCH'}")
            + f" (in the reports {lag:.2f} s after the load)"
        )
        if args.json:
            print(json.dumps({"beacons": ours, "hello": base, "ratio": ratio, "counted": totals,
                              "distinct_per_event": per_event, "exact": exact,
                              "report_lag_s": lag}))  # fmt: skip
        if exact is False:
            raise SystemExit(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
