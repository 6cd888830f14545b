"""Forecast benchmark: one forecast over N sampled requests and M live line items, beside a plain
replay of every request through the per-user evaluator, and the request log's cost per decision.

    flock /tmp/adtarget-heavy.lock python bench/bench_forecast.py \
        --requests 1000000 --line-items 10000 [--users 100000] [--days 7] [--seed 7]

Line items, users and rules come from ``bench_decision.py`` (8 dimensions; ``device`` is request
context). N sampled requests over the last ``--days`` days are written to a Parquet request log;
the proposal targets ``country in (C01, C02) and device = "tv"`` at priority 1 (bid 45) with a
cap and a budget. Timed:

- the forecast (``decision.forecast.forecast``: read the log, profiles, match, replay the reached
  users through ``DecisionEngine.decide`` with and without the proposal); target ≤ 1 s at 1M/10k;
- the baseline: every request's features through every line item's ``compile_rule`` (the
  per-user evaluator), timed on ``--baseline-sample`` requests and scaled to N (labelled so);
- the request log on the decision path (CPU time of this process, the writer thread and its
  final flush included, so other jobs on the shared box do not blur it): ``decide`` alone vs
  ``decide`` + ``RequestLog.record`` (writer thread running) at the default rate 0.01 and at
  1.0, and the same through the decision route's ASGI stack in process (guard, key, parse,
  decide, record, answer); target overhead ≤ 2% on the route.
Timings are ratios against baselines in the same process (the machine is shared).
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa  # noqa: E402

from adtarget.audience.build import SnapshotBuilder  # noqa: E402
from adtarget.audience.store import SnapshotStore  # noqa: E402
from adtarget.decision import forecast_cache  # noqa: E402
from adtarget.decision.counters import MemoryCounters  # noqa: E402
from adtarget.decision.eligibility import ZeroSpend  # noqa: E402
from adtarget.decision.engine import DecisionEngine, StaticIndex  # noqa: E402
from adtarget.decision.forecast import forecast  # noqa: E402
from adtarget.decision.index import LineItemIndex  # noqa: E402
from adtarget.decision.models import (  # noqa: E402
    DecisionRequest,
    DecisionResult,
    FrequencyCap,
    LiveLineItem,
)
from adtarget.decision.profiles import (  # noqa: E402
    MemoryProfileStore,
    ProfileStore,
    SnapshotProfileStore,
    merge_features,
)
from adtarget.decision.rebuild_cache import RebuildCache  # noqa: E402
from adtarget.decision.request_log import RequestLog  # noqa: E402
from adtarget.decision.request_store import (  # noqa: E402
    ParquetRequestStore,
    SampledRequest,
    forget_read_days,
)
from adtarget.rules.eval_python import compile_rule  # noqa: E402
from adtarget.rules.parse import parse  # noqa: E402
from adtarget.rules.registry import DimensionSpec  # noqa: E402
from bench_decision import DEVICES, make_items, make_user  # noqa: E402

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the forked replay parts)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def write_log(root: Path, users: list[str], requests: int, days: int, rng: random.Random) -> None:
    """``requests`` sampled rows spread over the ``days`` before ``NOW`` (rate 0.01)."""
    store = ParquetRequestStore(root)
    start = (NOW - timedelta(days=days)).replace(hour=0).timestamp()
    span = days * 86_400.0
    chunk: list[SampledRequest] = []
    for i in range(requests):
        chunk.append(
            SampledRequest(
                start + rng.random() * span,
                rng.choice(users),
                {"device": rng.choice(DEVICES)},
                ("video_30s",),
                1,
                (),
                0.01,
            )
        )
        if len(chunk) == 200_000 or i == requests - 1:
            store.write(chunk)
            chunk = []


def proposal(n: int) -> LiveLineItem:
    return LiveLineItem(
        id=n + 1,
        campaign_id=-1,
        advertiser_id=-1,
        priority=1,
        bid_cpm=45.0,
        rule=parse('country in ("C01", "C02") and device = "tv"'),
        formats=("video_30s",),
        creatives={"video_30s": (0,)},
        caps=(FrequencyCap("line_item", n + 1, 3, 86_400),),
        start=NOW + timedelta(days=1),
        end=NOW + timedelta(days=8),
        budget_total=50_000.0,
    )


PROFILE_DIMENSIONS = {
    "country": "category", "age": "number", "genres": "set", "os": "category",
    "region": "category", "plan": "category", "kids": "bool", "income": "number",
}  # fmt: skip
"""``bench_decision.make_user``'s dimensions, as a snapshot's registry types them."""


def snapshot_profiles(profiles: MemoryProfileStore, users: list[str], root: Path) -> ProfileStore:
    """The same profiles published as a snapshot (the embedded default's profile store, which
    builds each profile read from the snapshot's columns)."""
    store = SnapshotStore(root)
    kinds: dict[str, Any] = PROFILE_DIMENSIONS
    registry = {name: DimensionSpec(name, kind) for name, kind in kinds.items()}
    builder = SnapshotBuilder(store=store, base=None, registry=registry)
    rows = [profiles.get(u) or {} for u in users]
    columns: dict[str, Any] = {"user_id": users}
    for name, kind in kinds.items():
        values = [row.get(name) for row in rows]
        if kind == "set":
            values = [sorted(v) if v is not None else None for v in values]
        columns[name] = values
    builder.add_batch(pa.record_batch(columns))
    store.publish(builder.finish())
    return SnapshotProfileStore(store)


def log_overhead(index: LineItemIndex, profiles: MemoryProfileStore, users: list[str],
                 rng: random.Random, n: int, root: Path) -> dict[str, float]:  # fmt: skip
    """``decide`` per second alone and with ``record`` at rates 0.01 and 1.0 (best of 5)."""
    reqs = [DecisionRequest(rng.choice(users), {"device": rng.choice(DEVICES)}, 1, ("video_30s",))
            for _ in range(n)]  # fmt: skip
    out: dict[str, float] = {"none": 0.0, "0.01": 0.0, "1.0": 0.0}
    for attempt in range(5):  # interleaved, best of 5: the machine is shared
        for label, rate in (("none", 0.0), ("0.01", 0.01), ("1.0", 1.0)):
            engine = DecisionEngine(
                index_holder=StaticIndex(index), profiles=profiles, counters=MemoryCounters()
            )
            log = RequestLog(ParquetRequestStore(root / f"log-{label}-{attempt}"),
                             sample_rate=rate, queue_size=n + 1)  # fmt: skip
            log.start()
            t = time.process_time()
            for req in reqs:
                result = engine.decide(req)
                if rate:
                    log.record(req, result)
            log.close()  # the rows still queued are written: part of the cost
            elapsed = time.process_time() - t
            out[label] = max(out[label], n / elapsed)
    return out


def record_cost(users: list[str], rng: random.Random, n: int, root: Path) -> dict[str, float]:
    """CPU seconds per ``RequestLog.record`` call (writer thread and final flush included), at
    rates 0.01 and 1.0: the log's cost measured alone, which the A/B runs blur with noise."""
    result = DecisionResult([], snapshot=None)
    reqs = [DecisionRequest(rng.choice(users), {"device": rng.choice(DEVICES)}, 1, ("video_30s",))
            for _ in range(n)]  # fmt: skip
    out: dict[str, float] = {}
    for label, rate in (("0.01", 0.01), ("1.0", 1.0)):
        best = float("inf")
        for attempt in range(5):
            log = RequestLog(ParquetRequestStore(root / f"rec-{label}-{attempt}"),
                             sample_rate=rate, queue_size=n + 1)  # fmt: skip
            log.start()
            t = time.process_time()
            for req in reqs:
                log.record(req, result)
            log.close()
            best = min(best, (time.process_time() - t) / n)
        out[label] = best
    return out


def route_overhead(
    index: LineItemIndex, profiles: MemoryProfileStore, users: list[str], rng: random.Random,
    n: int, root: Path,
) -> dict[str, float]:  # fmt: skip
    """``POST /v1/decisions`` per second through the app's ASGI stack (guard, key, parse,
    decide, the request log's ``record``, JSON answer), in process, with no log, rate 0.01 and
    rate 1.0 (writer running); best of 5 runs each, interleaved. No network: the figure is the
    route's own cost, where the log's share is largest."""
    import asyncio

    import orjson

    from adtarget.api.app import create_app
    from adtarget.api.container import build_container
    from adtarget.api.decision_service import DecisionService
    from adtarget.settings import Settings

    settings = Settings(data_dir=root / "app", request_log_sample_rate=0.0, index_freeze_gc=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    container = build_container(settings)
    app.state.container = container
    engine = DecisionEngine(
        index_holder=StaticIndex(index), profiles=profiles, counters=MemoryCounters()
    )
    container.replace_decisions(DecisionService(engine, inline=True))
    bodies = [
        orjson.dumps({"user_id": rng.choice(users), "context": {"device": rng.choice(DEVICES)},
                      "formats": ["video_30s"]})
        for _ in range(n)
    ]  # fmt: skip

    async def drive() -> None:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        for body in bodies:

            async def receive(body: bytes = body) -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            scope = {
                "type": "http", "method": "POST", "path": "/v1/decisions", "root_path": "",
                "query_string": b"", "headers": [(b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())], "app": app,
            }  # fmt: skip
            await app(scope, receive, send)
            sent.clear()

    best: dict[str, float] = {"none": 0.0, "0.01": 0.0, "1.0": 0.0}
    for attempt in range(5):
        for label, rate in (("none", 0.0), ("0.01", 0.01), ("1.0", 1.0)):
            log = None
            if rate:
                log = RequestLog(ParquetRequestStore(root / f"route-{label}-{attempt}"),
                                 sample_rate=rate, queue_size=n + 1)  # fmt: skip
                log.start()
            container.request_log = log
            t = time.process_time()
            asyncio.run(drive())
            if log is not None:
                log.close()  # the rows still queued are written: part of the cost
            best[label] = max(best[label], n / (time.process_time() - t))
    container.close()
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument("--line-items", type=int, default=10_000)
    p.add_argument("--users", type=int, default=0, help="default: requests / 10")
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--baseline-sample", type=int, default=2_000)
    p.add_argument("--overhead-requests", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--runs", type=int, default=5, help="timed forecasts of each kind (median)")
    p.add_argument("--profiles", choices=("memory", "snapshot"), default="memory",
                   help="the forecasts' profile store: in memory, or the same profiles "
                   "published as a snapshot (the embedded default's store)")  # fmt: skip
    p.add_argument("--no-overhead", action="store_true", help="skip the request-log overhead runs")
    p.add_argument("--budgeted", type=float, default=0.0, help="share of the live line items "
                   "given a budget (0.3: budget-coupled users, as real catalogs are)")  # fmt: skip
    p.add_argument("--log-dir", help="keep the request log here and reuse it when it exists "
                   "(only with the same --requests/--users/--days/--seed)")  # fmt: skip
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    n_users = a.users or max(10, a.requests // 10)
    users = [f"u{i}" for i in range(n_users)]
    profiles = MemoryProfileStore({u: make_user(rng) for u in users})
    items = make_items(a.line_items, rng)
    if a.budgeted:  # a budget couples users: the replay without the proposal decides every request
        items = [replace(it, budget_total=1e9) if rng.random() < a.budgeted else it for it in items]
        print(f"budgeted: {sum(it.budget_total is not None for it in items):,} of "
              f"{len(items):,} line items carry a budget (coupled replay)")  # fmt: skip
    t = time.perf_counter()
    cache = RebuildCache()  # as the index holder builds the serving index
    index = LineItemIndex(items, compiler=cache.compiled, facts=cache.facts)
    print(f"live index: {a.line_items:,} line items built in {time.perf_counter() - t:.2f} s "
          "(once per catalog change, not per forecast)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        readers: ProfileStore = profiles
        if a.profiles == "snapshot":
            t = time.perf_counter()
            readers = snapshot_profiles(profiles, users, root / "snapshots")
            print(f"profiles: {n_users:,} users published as a snapshot in "
                  f"{time.perf_counter() - t:.1f} s; the forecasts read them from it")  # fmt: skip
        logged = Path(a.log_dir) if a.log_dir else root / "requests"
        t = time.perf_counter()
        if ParquetRequestStore(logged).days():  # --log-dir of an earlier run with the same args
            print(f"request log: reused {logged}")  # (the baseline's sample draws differ)
        else:
            write_log(logged, users, a.requests, a.days, rng)
            print(f"request log: {a.requests:,} sampled requests of {n_users:,} users over "
                  f"{a.days} days written in {time.perf_counter() - t:.1f} s")  # fmt: skip
        store = ParquetRequestStore(logged)
        prop = proposal(a.line_items)
        other = replace(prop, priority=3, bid_cpm=12.0, rule=parse('country = "C01"'))
        cold_runs: list[float] = []
        cold_cpu: list[float] = []
        answer: dict[str, Any] = {}
        one_runs: list[float] = []
        one_cpu: list[float] = []
        # the process's one-time costs are not a forecast's: the first read of the log grows
        # Arrow's memory pool from the system (0.25 s against 0.10-0.12 s for the same read
        # again) and starts thread pools, once per serving process; nothing this forecast
        # keeps is kept below (every cold run clears the caches)
        t = time.perf_counter()
        forecast(proposal=other, live=index, store=store, profiles=readers, spend=ZeroSpend(),
                 now=NOW, lookback_days=a.days)  # fmt: skip
        print(f"warm-up: the process's first forecast took {time.perf_counter() - t:.3f} s "
              "(not counted; its caches are cleared before every cold run)")  # fmt: skip
        # nothing kept: the log read from disk, every match and replay done. Each kind runs in
        # a block: a split forecast right after an in-process one took 50-300 ms more (the
        # in-process run's heap is left to the next fork and read), and a serving process
        # splits every forecast no budget couples (docs/benchmarks.md#forecast)
        for runs, cpu, processes in ((cold_runs, cold_cpu, None), (one_runs, one_cpu, 1)):
            for _ in range(a.runs):
                forecast_cache.clear()
                forget_read_days()
                t, c = time.perf_counter(), _cpu()
                answer = forecast(proposal=prop, live=index, store=store, profiles=readers,
                                  spend=ZeroSpend(), now=NOW, lookback_days=a.days,
                                  processes=processes)  # fmt: skip
                runs.append(time.perf_counter() - t)
                cpu.append(_cpu() - c)
                if processes is None:
                    split = answer["replay_processes"]
        warm_runs: list[float] = []
        warm_cpu: list[float] = []
        for _ in range(a.runs):  # after the cold one: another proposal on the same window
            t, c = time.perf_counter(), _cpu()
            warm = forecast(proposal=other, live=index, store=store, profiles=readers,
                            spend=ZeroSpend(), now=NOW, lookback_days=a.days)  # fmt: skip
            warm_runs.append(time.perf_counter() - t)
            warm_cpu.append(_cpu() - c)
        forecast_cache.clear()
        forget_read_days()
        cold_other = forecast(proposal=other, live=index, store=store, profiles=readers,
                              spend=ZeroSpend(), now=NOW, lookback_days=a.days)  # fmt: skip
        for got in (warm, cold_other):
            got.pop("elapsed_ms", None)
        assert warm == cold_other, "a warm forecast must answer as a cold one"
        fc = statistics.median(cold_runs)
        fw = statistics.median(warm_runs)
        print(f"forecast, cold (nothing kept), split by user across {split} forked "
              f"process(es): median {fc:.3f} s of {a.runs} "
              f"(min {min(cold_runs):.3f} s; CPU of this process and its children: median "
              f"{statistics.median(cold_cpu):.3f} s, min {min(cold_cpu):.3f} s); "
              f"replayed {answer['replayed_requests']:,} requests of "
              f"{answer['replayed_users']:,} users; matched {answer['matched_requests']:,}, "
              f"forecast {answer['forecast_impressions']:,}, 95% {answer['confidence']}  "
              f"[target <= 1 s at 1M requests / 10k line items]")  # fmt: skip
        fo = statistics.median(one_runs)
        print(f"forecast, cold, replayed in this process (processes=1): median {fo:.3f} s of "
              f"{a.runs} "
              f"(min {min(one_runs):.3f} s; CPU median {statistics.median(one_cpu):.3f} s); "
              f"split/in-process wall ratio {fc / fo:.2f}")  # fmt: skip
        print(f"forecast, warm (another proposal, same window and catalog: the log's days, the "
              f"index matches and the replay without the proposal kept): median {fw:.3f} s of "
              f"{a.runs} "
              f"(min {min(warm_runs):.3f} s; CPU median {statistics.median(warm_cpu):.3f} s, "
              f"min {min(warm_cpu):.3f} s); equal to its cold answer  "
              f"[target <= 1 s]")  # fmt: skip
        # baseline: every request through every line item's per-user evaluator
        matchers = [compile_rule(it.rule) if it.rule is not None else None for it in items]
        sample = [(rng.choice(users), {"device": rng.choice(DEVICES)})
                  for _ in range(a.baseline_sample)]  # fmt: skip
        t = time.perf_counter()
        for uid, ctx in sample:
            feats = merge_features(profiles.get(uid), ctx)
            for m in matchers:
                if m is None or m(feats):
                    pass
        per = (time.perf_counter() - t) / len(sample)
        full = per * a.requests
        print(f"baseline, per-user evaluator replay of all {a.requests:,} requests x "
              f"{a.line_items:,} rules: {per * 1e3:.2f} ms per request, {full:.1f} s for all "
              f"(scaled from {len(sample):,} requests); ratio baseline/forecast: "
              f"{full / fc:.1f}x cold, {full / fw:.1f}x warm")  # fmt: skip
        if a.no_overhead:
            return 0
        rates = log_overhead(index, profiles, users, rng, a.overhead_requests, root)
        for label in ("0.01", "1.0"):
            cost = (1 - rates[label] / rates["none"]) * 100
            print(f"request log on the decision path, rate {label}: {rates[label]:,.0f} "
                  f"decide()/CPU-s vs {rates['none']:,.0f} without: overhead {cost:.1f}%  "
                  "[engine alone, the log's worst case]")  # fmt: skip
        route = route_overhead(index, profiles, users, rng, a.overhead_requests, root)
        for label in ("0.01", "1.0"):
            cost = (1 - route[label] / route["none"]) * 100
            print(f"request log on the decision route (ASGI, in process), rate {label}: "
                  f"{route[label]:,.0f} req/CPU-s vs {route['none']:,.0f} without: overhead "
                  f"{cost:.1f}% (A/B, +-5% noise on this box)")  # fmt: skip
        per_request = 1.0 / route["none"]
        for label, cost_s in record_cost(users, rng, a.overhead_requests, root).items():
            print(f"RequestLog.record alone, rate {label}: {cost_s * 1e6:.2f} us CPU per request "
                  f"= {cost_s / per_request * 100:.2f}% of the route's "
                  f"{per_request * 1e6:.1f} us  [target <= 2%]")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
