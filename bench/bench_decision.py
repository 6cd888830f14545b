"""Decision benchmark: index match vs evaluating every line item's rule, and full ``decide``.

    python bench/bench_decision.py --line-items 10000 [--requests 2000] [--seed 7]

Generates line items with rules over 8 dimensions (categories, numbers, a set, a bool; AND, OR,
NOT, missing values) and random users, then per request times ``LineItemIndex.match`` against the
baseline (``compile_rule`` of every line item, the per-user evaluator) and checks both give the
same line items. One request = ``DecisionEngine.decide`` (limit 3); its baseline = evaluate every
line item with the per-user evaluator and rank the matches; the top 3 are asserted equal. Also
prints the index match with every matching id listed, and ``explain`` (every line item's reason).
Targets (issue 7): decide p50 ≤ 50 µs at 10,000 line items and ≥ 30× the scan.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from typing import Any

from adtarget.decision.counters import MemoryCounters
from adtarget.decision.engine import DecisionEngine, StaticIndex
from adtarget.decision.index import LineItemIndex, scan_match_ids
from adtarget.decision.models import DecisionRequest, FrequencyCap, LiveLineItem
from adtarget.decision.profiles import MemoryProfileStore
from adtarget.rules.ast import And, Between, Compare, HasAny, InList, IsMissing, Not, Or, Rule
from adtarget.rules.eval_python import compile_rule

COUNTRIES = [f"C{i:02d}" for i in range(40)]
REGIONS = [f"R{i:03d}" for i in range(200)]
DEVICES = ["tv", "mobile", "desktop", "tablet", "console"]
OSES = ["android", "ios", "tizen", "webos", "roku", "windows"]
GENRES = [f"g{i}" for i in range(30)]
PLANS = ["free", "basic", "standard", "premium"]


def _clause(rng: random.Random) -> Rule:
    kind = rng.random()
    if kind < 0.22:
        return InList("country", tuple(rng.sample(COUNTRIES, rng.randint(1, 4))))
    if kind < 0.34:
        lo = rng.randrange(13, 60)
        return Between("age", lo, lo + rng.randrange(5, 25))
    if kind < 0.48:
        return HasAny("genres", tuple(rng.sample(GENRES, rng.randint(1, 3))))
    if kind < 0.60:
        return Compare("device", "=", rng.choice(DEVICES))
    if kind < 0.68:
        return Not(InList("os", tuple(rng.sample(OSES, 2))))
    if kind < 0.80:
        return InList("region", tuple(rng.sample(REGIONS, rng.randint(1, 10))))
    if kind < 0.87:
        return Compare("income", rng.choice([">=", "<"]), rng.randrange(20, 200) * 1000)
    if kind < 0.93:
        return Compare("plan", "=", rng.choice(PLANS))
    if kind < 0.97:
        return Compare("kids", "=", rng.random() < 0.5)
    return IsMissing("income", negated=rng.random() < 0.5)


def make_rule(rng: random.Random) -> Rule:
    """2–4 clauses ANDed, sometimes with an OR of two clauses inside."""
    parts: list[Rule] = [_clause(rng) for _ in range(rng.randint(2, 4))]
    if rng.random() < 0.2:
        parts[-1] = Or((parts[-1], _clause(rng)))
    return And(tuple(parts))


def make_items(n: int, rng: random.Random) -> list[LiveLineItem]:
    """``n`` live line items, 10% frequency-capped."""
    out = []
    for i in range(1, n + 1):
        caps = (FrequencyCap("line_item", i, 3, 3600),) if rng.random() < 0.1 else ()
        out.append(
            LiveLineItem(
                id=i,
                campaign_id=i // 10,
                advertiser_id=i // 100,
                priority=rng.randint(1, 8),
                bid_cpm=round(rng.uniform(1, 40), 2),
                rule=make_rule(rng),
                formats=("video_30s",),
                creatives={"video_30s": (i,)},
                caps=caps,
            )
        )
    return out


def make_user(rng: random.Random) -> dict[str, Any]:
    """A user profile with some dimensions missing."""
    u: dict[str, Any] = {
        "country": rng.choice(COUNTRIES),
        "age": rng.randint(13, 80),
        "genres": frozenset(rng.sample(GENRES, rng.randint(0, 5))),
        "os": rng.choice(OSES),
        "region": rng.choice(REGIONS),
        "plan": rng.choice(PLANS),
        "kids": rng.random() < 0.3,
    }
    if rng.random() < 0.7:
        u["income"] = rng.randrange(10, 250) * 1000
    for k in list(u):
        if rng.random() < 0.05:
            del u[k]
    return u


LIMIT = 3
EXPLAIN_SAMPLE = 50


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(line_items: int, requests: int, seed: int) -> dict[str, float]:
    """Build, time and check; returns the figures (also printed)."""
    rng = random.Random(seed)
    items = make_items(line_items, rng)
    t0 = time.perf_counter()
    index = LineItemIndex(items)
    build_s = time.perf_counter() - t0
    matchers = [compile_rule(it.rule) for it in items if it.rule is not None]
    users = [make_user(rng) for _ in range(requests)]
    contexts = [{"device": rng.choice(DEVICES)} for _ in range(requests)]
    feats = [{**u, **c} for u, c in zip(users, contexts, strict=True)]
    for f in (make_user(rng) for _ in range(min(requests, 500))):  # warm-up, other users
        index.match(f).tolist()
    idx_us: list[float] = []
    got_ids: list[set[int]] = []
    for f in feats:  # each method timed in its own loop, so neither evicts the other's cache
        t = time.perf_counter_ns()
        got = index.match(f).tolist()  # every match listed: the honest full-set comparison
        idx_us.append((time.perf_counter_ns() - t) / 1000)
        got_ids.append({index.items[p].id for p in got})
    rank = {it.id: it.rank_key() for it in items}
    scan_us: list[float] = []
    want_top: list[list[int]] = []
    matched = 0
    for f, ids in zip(feats, got_ids, strict=True):
        t = time.perf_counter_ns()
        want = scan_match_ids(items, f, matchers)
        top = sorted(want, key=rank.__getitem__)[:LIMIT]  # the baseline decision
        scan_us.append((time.perf_counter_ns() - t) / 1000)
        if ids != want:
            raise SystemExit(f"MISMATCH for {f}: index {sorted(ids)[:10]} scan {sorted(want)[:10]}")
        want_top.append(top)
        matched += len(want)
    profiles = {f"u{i}": u for i, u in enumerate(users)}
    engine = DecisionEngine(
        index_holder=StaticIndex(index),
        profiles=MemoryProfileStore(profiles, version="bench"),
        counters=MemoryCounters(),
    )
    dec_us: list[float] = []
    for i, ctx in enumerate(contexts):
        req = DecisionRequest(f"u{i}", context=ctx, limit=LIMIT, formats=("video_30s",))
        t = time.perf_counter_ns()
        result = engine.decide(req)
        dec_us.append((time.perf_counter_ns() - t) / 1000)
        if [d.line_item_id for d in result.decisions] != want_top[i]:
            raise SystemExit(f"DECISION MISMATCH for u{i}: {result.decisions} vs {want_top[i]}")
    exp_us: list[float] = []
    for i, ctx in enumerate(contexts[:EXPLAIN_SAMPLE]):
        req = DecisionRequest(f"x{i}", context=ctx, limit=LIMIT, explain=True)
        t = time.perf_counter_ns()
        engine.decide(req)
        exp_us.append((time.perf_counter_ns() - t) / 1000)
    fig = {
        "line_items": line_items,
        "requests": requests,
        "build_s": build_s,
        "avg_matches": matched / requests,
        "index_p50_us": statistics.median(idx_us),
        "index_p99_us": _pct(idx_us, 0.99),
        "scan_p50_us": statistics.median(scan_us),
        "scan_p99_us": _pct(scan_us, 0.99),
        "decide_p50_us": statistics.median(dec_us),
        "decide_p99_us": _pct(dec_us, 0.99),
        "explain_p50_us": statistics.median(exp_us),
        "explain_p99_us": _pct(exp_us, 0.99),
    }
    fig["ratio_p50"] = fig["scan_p50_us"] / max(fig["decide_p50_us"], 1e-9)
    fig["ratio_match_p50"] = fig["scan_p50_us"] / max(fig["index_p50_us"], 1e-9)
    print(
        f"line items: {line_items:,}  requests: {requests:,}  index build: {build_s:.2f} s  "
        f"avg matching line items: {fig['avg_matches']:.1f}  (all answers checked equal)"
    )
    for label, key in (
        ("engine.decide (limit 3)        ", "decide"),
        ("index match, all ids listed    ", "index"),
        ("scan (compile_rule) + rank     ", "scan"),
        ("decide with explain (all items)", "explain"),
    ):
        print(f"{label} p50 {fig[key + '_p50_us']:9.1f} µs   p99 {fig[key + '_p99_us']:9.1f} µs")
    print(
        f"ratio (scan/decide, p50): {fig['ratio_p50']:.1f}x   "
        f"ratio (scan/full match, p50): {fig['ratio_match_p50']:.1f}x   "
        f"[target: decide p50 <= 50 µs at 10k, >= 30x]"
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--line-items", type=int, default=10_000)
    p.add_argument("--requests", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    run(a.line_items, a.requests, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
