"""HTTP ad breaks: 4-slot pods beside single-ad decisions, one ``adtarget serve``, one run.

Builds a catalog of ``--line-items`` live line items (the generated rules of
``bench_http.py``) over advertisers with competitive categories, each with a 15 s and a 30 s
video creative carrying ``attributes.duration``, and a published snapshot of ``--users`` users.
One ``adtarget serve --workers N`` answers first single-ad requests (``limit`` 1), then ad
breaks (``"pod": {"slots": 4, "max_duration": 120}``) from the same users and contexts, with the
same load generator (wrk, or ``bench_http``'s socket client); it prints both, the ratio, and how
full the breaks were (sampled answers), so the pods figure is for real fills.

    flock /tmp/adtarget-heavy.lock python bench/bench_pods.py --seconds 10 --concurrency 32

Targets (docs/benchmarks.md): >= 5,000 pods/s at p99 <= 5 ms on the 2-core box, load generator
included.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_http import (  # noqa: E402 - the sibling bench, importable once HERE is on the path
    DEVICES,
    _python_client,
    _rule,
    build_snapshot,
    free_port,
    run_load,
    start_adtarget,
    stop,
    wait_ready,
)

CATEGORIES = ["auto", "telecom", "food", "finance", "travel", "retail", "pharma", "gaming"]
POD = {"slots": 4, "max_duration": 120}


def build_catalog(data_dir: Path, line_items: int, seed: int) -> str:
    """Advertisers (one per 50 line items, most with a category, some campaigns overriding
    it), two video creatives each (15 s and 30 s), active line items; returns a decisions key."""
    from adtarget.api.auth import create_key
    from adtarget.catalog.db import open_catalog
    from adtarget.catalog.tables import (
        Advertiser,
        Campaign,
        Creative,
        Dimension,
        LineItem,
        LineItemCreative,
    )
    from adtarget.settings import Settings

    rng = random.Random(seed)
    factory = open_catalog(Settings(data_dir=data_dir))
    now = datetime.now(UTC)
    with factory() as s, s.begin():
        for name, typ in (
            ("country", "category"),
            ("device", "category"),
            ("age", "number"),
            ("genres", "set"),
        ):
            s.add(Dimension(name=name, type=typ))
        advertisers = [
            Advertiser(name=f"adv{i}", category=rng.choice([*CATEGORIES, None]))
            for i in range(max(1, line_items // 50))
        ]
        s.add_all(advertisers)
        s.flush()
        campaigns = [
            Campaign(
                advertiser_id=a.id,
                name=f"camp{a.id}-{j}",
                status="active",
                budget_total=Decimal(10**9),
                start=now - timedelta(days=1),
                end=now + timedelta(days=30),
                category=rng.choice(CATEGORIES) if rng.random() < 0.1 else None,
            )
            for a in advertisers
            for j in range(2)
        ]
        s.add_all(campaigns)
        s.flush()
        creatives: dict[int, list[Creative]] = {}
        for a in advertisers:
            creatives[a.id] = [
                Creative(
                    advertiser_id=a.id,
                    name=f"cr{a.id}-{sec}",
                    format=f"video_{sec}s",
                    attributes={"media_url": f"https://cdn.example/{a.id}.mp4", "duration": sec},
                )
                for sec in (15, 30)
            ]
            s.add_all(creatives[a.id])
        s.flush()
        items = []
        for i in range(line_items):
            camp = campaigns[i % len(campaigns)]
            capped = rng.random() < 0.1
            items.append(
                LineItem(
                    campaign_id=camp.id,
                    name=f"li{i}",
                    status="active",
                    priority=rng.randint(1, 16),
                    bid_cpm=Decimal(rng.randint(100, 5000)) / 100,
                    targeting=_rule(rng),
                    formats=["video_15s", "video_30s"],
                    frequency_cap_count=3 if capped else None,
                    frequency_cap_window_seconds=3600 if capped else None,
                )
            )
        s.add_all(items)
        s.flush()
        camp_adv = {c.id: c.advertiser_id for c in campaigns}
        for li in items:
            both = creatives[camp_adv[li.campaign_id]]
            for cr in both if rng.random() < 0.5 else [both[rng.randrange(2)]]:
                s.add(LineItemCreative(line_item_id=li.id, creative_id=cr.id))
        _row, key = create_key(session=s, role="decisions", name="bench")
    return key


def bodies(users: int, n: int, seed: int, *, pod: bool) -> list[bytes]:
    """``n`` requests for known users with a varying context (the same users either way)."""
    rng = random.Random(seed + 1)
    out = []
    for _ in range(n):
        body: dict[str, Any] = {
            "user_id": f"u{rng.randrange(users)}",
            "context": {"device": rng.choice(DEVICES)},
            "formats": ["video_15s", "video_30s"],
        }
        if pod:
            body["pod"] = POD
        out.append(json.dumps(body).encode())
    return out


def fill_sample(port: int, reqs: list[bytes], headers: dict[str, str]) -> dict[str, float]:
    """How full the breaks are: filled slots and seconds over sampled answers."""
    import httpx

    filled = seconds = 0.0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
        for body in reqs:
            resp = client.post("/v1/decisions", content=body)
            resp.raise_for_status()
            pod = resp.json()["pod"]
            filled += pod["filled"]
            seconds += pod["duration"]
    return {"filled": filled / len(reqs), "duration": seconds / len(reqs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--line-items", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="adtarget-bench-pods-"))
    try:
        data_dir = tmp / "data"
        t0 = time.perf_counter()
        key = build_catalog(data_dir, args.line_items, args.seed)
        version = build_snapshot(data_dir, args.users, args.seed)
        print(
            f"setup: {args.line_items} line items, {args.users} users (snapshot {version}) "
            f"in {time.perf_counter() - t0:.1f} s; {args.workers} workers, "
            f"concurrency {args.concurrency}, {args.seconds:g} s each, "
            f"load generator: {'python sockets' if _python_client() else 'wrk'}"
        )
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        single_bodies = bodies(args.users, 64, args.seed, pod=False)
        pod_bodies = bodies(args.users, 64, args.seed, pod=True)
        port = free_port()
        proc = start_adtarget(data_dir, port, args.workers)
        results: dict[str, dict[str, float]] = {}
        try:
            wait_ready(port, "/readyz")
            fill = fill_sample(port, pod_bodies, headers)
            for name, reqs in (("single ad", single_bodies), ("4-slot pod", pod_bodies)):
                run_load(port, min(1.0, args.seconds), args.concurrency, reqs, headers, tmp)
                got = run_load(port, args.seconds, args.concurrency, reqs, headers, tmp)
                results[name] = got
                print(
                    f"{name:<12} {got['rps']:>10,.0f} req/s   p50 {got['p50_ms']:6.2f} ms   "
                    f"p99 {got['p99_ms']:6.2f} ms   non-2xx {got['non_2xx']:.0f}"
                )
        finally:
            stop(proc)
        single, pods = results["single ad"], results["4-slot pod"]
        ratio = pods["rps"] / single["rps"] if single["rps"] else float("nan")
        print(
            f"breaks: {fill['filled']:.2f} of 4 slots, {fill['duration']:.1f} s of 120 s filled "
            "on average (64 sampled answers)"
        )
        print(
            f"ratio: pods = {ratio:.2f} x single-ad throughput "
            "(target >= 5,000 pods/s, p99 <= 5 ms)"
        )
        if args.json:
            print(json.dumps({"single": single, "pod": pods, "ratio": ratio, "fill": fill}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
