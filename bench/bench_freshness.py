"""Freshness: how fast a catalog change reaches decisions, with the rule cache and without.

    python bench/bench_freshness.py --line-items 10000 [--changes 5] [--url postgresql+psycopg://...]

Builds a migrated catalog (SQLite file by default, or ``--url``) with N live line items whose
rules come from ``bench_decision.make_rule`` (8 dimensions, AND/OR/NOT), stored as the service
stores them (text and JSON), each with a creative. Then, in one process, it times:

- the marker query ``IndexHolder`` polls;
- the **baseline**: a rebuild from scratch (``load_catalog`` + ``LineItemIndex`` with an empty
  ``RebuildCache``, i.e. every rule parsed and compiled again), p50 of ``--runs``;
- a **warm rebuild** after one line item's targeting changed by a committed ``UPDATE`` (what
  ``IndexHolder.refresh`` does with its cache), p50 over ``--changes`` changes, and checks the
  warm index matches exactly what the cold one matches on generated users;
- **commit → served**: with the holder's poll thread running (``--poll`` seconds) while the
  main thread calls ``match`` in a loop, the time from a committed pause of a line item until
  ``holder.current()`` no longer holds it, and the longest turn of that loop (a stall).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adtarget.catalog.db import make_engine, make_session_factory, migrate  # noqa: E402
from adtarget.catalog.live import catalog_marker  # noqa: E402
from adtarget.catalog.tables import (  # noqa: E402
    Advertiser,
    Campaign,
    Creative,
    LineItem,
    LineItemCreative,
)
from adtarget.decision.index import DecisionIndex, LineItemIndex  # noqa: E402
from adtarget.decision.index_holder import IndexHolder  # noqa: E402
from adtarget.decision.loader import load_catalog  # noqa: E402
from adtarget.decision.rebuild_cache import RebuildCache  # noqa: E402
from adtarget.rules.format import to_json, to_text  # noqa: E402
from bench_decision import make_rule, make_user  # noqa: E402


def populate(factory: sessionmaker[Session], line_items: int, seed: int) -> None:
    """Bulk-insert advertisers, active campaigns, creatives and live line items."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    n_adv = max(1, line_items // 100)
    with factory() as s, s.begin():
        s.execute(insert(Advertiser), [{"id": a, "name": f"adv{a}"} for a in range(1, n_adv + 1)])
        s.execute(
            insert(Campaign),
            [
                {
                    "id": a,
                    "advertiser_id": a,
                    "name": f"camp{a}",
                    "status": "active",
                    "budget_total": Decimal(10**9),
                    "start": now - timedelta(days=1),
                    "end": now + timedelta(days=30),
                }
                for a in range(1, n_adv + 1)
            ],
        )
        s.execute(
            insert(Creative),
            [
                {"id": a, "advertiser_id": a, "name": f"cr{a}", "format": "video_15s"}
                for a in range(1, n_adv + 1)
            ],
        )
        rows = []
        for i in range(1, line_items + 1):
            rule = make_rule(rng)
            rows.append(
                {
                    "id": i,
                    "campaign_id": (i - 1) % n_adv + 1,
                    "name": f"li{i}",
                    "status": "active",
                    "priority": rng.randint(1, 16),
                    "bid_cpm": Decimal(rng.randint(100, 5000)) / 100,
                    "targeting": to_text(rule),
                    "targeting_json": to_json(rule),
                    "formats": ["video_15s"],
                }
            )
        s.execute(insert(LineItem), rows)
        s.execute(
            insert(LineItemCreative),
            [
                {"line_item_id": i, "creative_id": (i - 1) % n_adv + 1}
                for i in range(1, line_items + 1)
            ],
        )


def retarget(factory: sessionmaker[Session], li_id: int, rng: random.Random) -> None:
    """Commit a new rule for one line item, as the service would (text, JSON, version)."""
    rule = make_rule(rng)
    with factory() as s, s.begin():
        s.execute(
            update(LineItem)
            .where(LineItem.id == li_id)
            .values(
                targeting=to_text(rule),
                targeting_json=to_json(rule),
                version=LineItem.version + 1,
                updated_at=datetime.now(UTC),
            )
        )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def cold_rebuild(factory: sessionmaker[Session]) -> LineItemIndex:
    """The baseline: what every rebuild cost before the cache (an empty cache each time)."""
    with factory() as s:
        loaded = load_catalog(s, cache=RebuildCache())
    return LineItemIndex(loaded.items, not_live=loaded.not_live)


def same_matches(a: DecisionIndex, b: DecisionIndex, users: int, seed: int) -> bool:
    rng = random.Random(seed)
    return all(a.match_ids(u) == b.match_ids(u) for u in (make_user(rng) for _ in range(users)))


SETTLE_S = 1.0
"""How long the loop keeps turning after the change is served (work after the swap counts)."""


def commit_to_served(
    factory: sessionmaker[Session], holder: IndexHolder, li_id: int, probe: dict[str, Any]
) -> tuple[float, float]:
    """Pause ``li_id``; seconds until the holder's index drops it, and the longest loop turn.

    A turn is one ``match`` plus ``sleep(0)`` (where an event loop would wait in epoll): its
    longest duration is how long a request arriving at the worst moment waited, whether the
    rebuild thread held the GIL (a garbage collection, a C call) inside ``match`` or between.
    """
    with factory() as s, s.begin():
        s.execute(
            update(LineItem)
            .where(LineItem.id == li_id)
            .values(status="paused", version=LineItem.version + 1, updated_at=datetime.now(UTC))
        )
    t0 = time.perf_counter()
    worst = 0.0
    served_at: float | None = None
    while served_at is None or time.perf_counter() - served_at < SETTLE_S:
        t = time.perf_counter()
        index = holder.current()
        index.match(probe)
        time.sleep(0)  # a serving event loop releases the GIL in epoll between requests
        worst = max(worst, time.perf_counter() - t)
        if served_at is None and li_id not in index.position_of:
            served_at = t
        if t - t0 > 120:
            raise TimeoutError(f"line item {li_id} still served after 120 s")
    assert served_at is not None
    return served_at - t0, worst


def run(
    url: str | None,
    *,
    line_items: int,
    changes: int,
    runs: int,
    poll: float,
    seed: int,
    freeze_gc: bool = True,
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{Path(tmp) / 'catalog.sqlite3'}"
        engine = make_engine(url)
        migrate(url, engine=engine)
        factory = make_session_factory(engine)
        t_fill, _ = timed(lambda: populate(factory, line_items, seed))
        print(f"catalog: {line_items:,} live line items on {engine.dialect.name} ({t_fill:.1f} s)")

        def marker() -> Any:
            with factory() as s:
                return catalog_marker(s)

        marker_s = statistics.median(timed(marker)[0] for _ in range(5))
        cold = [timed(lambda: cold_rebuild(factory)) for _ in range(runs)]
        cold_s = statistics.median(t for t, _ in cold)

        holder = IndexHolder.from_session_factory(factory, poll_seconds=poll, freeze_gc=freeze_gc)
        first_s, _ = timed(holder.refresh)
        rng = random.Random(seed + 1)
        warm: list[float] = []
        for _ in range(changes):
            retarget(factory, rng.randint(1, line_items), rng)
            t, _ = timed(holder.refresh)
            warm.append(t)
        warm_s = statistics.median(warm)
        agree = same_matches(holder.current(), cold_rebuild(factory), 300, seed)
        stats = holder.rebuild_cache.stats() if holder.rebuild_cache is not None else {}

        holder.start()
        probe = make_user(random.Random(seed + 2))
        served: list[tuple[float, float]] = []
        try:
            for li_id in rng.sample(range(1, line_items + 1), min(changes, line_items)):
                time.sleep(rng.uniform(0, poll))
                served.append(commit_to_served(factory, holder, li_id, probe))
        finally:
            holder.stop()
            engine.dispose()
    res = {
        "line_items": float(line_items),
        "marker_ms": marker_s * 1000,
        "cold_rebuild_s": cold_s,
        "first_refresh_s": first_s,
        "warm_rebuild_s": warm_s,
        "ratio": cold_s / warm_s if warm_s else float("inf"),
        "agree": float(agree),
        "served_median_s": statistics.median(t for t, _ in served),
        "served_max_s": max(t for t, _ in served),
        "match_worst_ms": max(w for _, w in served) * 1000,
        "parsed_misses_last": float(stats.get("parsed_misses", 0)),
    }
    print(f"marker query, p50                               {res['marker_ms']:9.1f} ms")
    print(f"baseline: rebuild from scratch, p50 of {runs}        {cold_s:9.3f} s")
    print(f"first refresh (empty cache)                     {first_s:9.3f} s")
    print(f"rebuild after 1 changed line item, p50 of {changes}     {warm_s:9.3f} s")
    print(f"ratio (scratch / after one change)              {res['ratio']:9.1f}x")
    print(f"cached index matches the scratch index          {'yes' if agree else 'NO'}")
    print(
        f"commit -> served (poll {poll:g} s), median / max    "
        f"{res['served_median_s']:6.2f} / {res['served_max_s']:.2f} s"
    )
    print(f"longest stall of the match loop meanwhile      {res['match_worst_ms']:9.1f} ms")
    if not agree:
        raise SystemExit("the cached index disagrees with a rebuild from scratch")
    return res


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--line-items", type=int, default=10_000)
    ap.add_argument("--changes", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--poll", type=float, default=2.0, help="IndexHolder poll_seconds")
    ap.add_argument("--url", help="catalog URL (default: a temporary SQLite file)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-freeze-gc", action="store_true", help="as ADTARGET_INDEX_FREEZE_GC=false")
    a = ap.parse_args(argv)
    return run(
        a.url,
        line_items=a.line_items,
        changes=a.changes,
        runs=a.runs,
        poll=a.poll,
        seed=a.seed,
        freeze_gc=not a.no_freeze_gc,
    )


if __name__ == "__main__":
    main()
