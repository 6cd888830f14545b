"""Catalog change -> served by a decision worker: the index patched from the change log, beside
today's full rebuild in the same run.

For each size (``--line-items``, default 10,000 and 100,000 live line items) on a fresh catalog
(SQLite file by default; ``--pg`` makes a throwaway database on 127.0.0.1:5432, so changes
arrive by ``NOTIFY``):

- the **baseline**: what a worker did per change before patching, a full rebuild of its index
  (``IndexHolder.refresh``, warm cache, p50 of ``--runs``), and a cold one;
- **commit -> served**: a started ``IndexHolder`` (its ``ChangeFeed`` thread following the log,
  the safety-net poll at 60 s) while this thread commits ``--changes`` changes (pause, resume,
  new rule, alternately) and spins until the served index holds each one; p50 / p99 seconds;
- **CPU per change per worker**: CPU of every thread but this one over the changes, divided by
  their number (the feed reading the log, loading the changed line item, patching, swapping);
- whether the patched index then **equals a rebuild** from scratch (the agreement check).

Run: ``flock /tmp/adtarget-heavy.lock python bench/bench_propagation.py [--pg]``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adtarget.catalog.db import make_engine, make_session_factory, migrate  # noqa: E402
from adtarget.catalog.tables import LineItem  # noqa: E402
from adtarget.decision.index_holder import IndexHolder  # noqa: E402
from adtarget.decision.patched_index import PatchedIndex, differences  # noqa: E402
from bench_freshness import populate, retarget, timed  # noqa: E402

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@contextlib.contextmanager
def catalog(pg: bool, tmp: Path) -> Iterator[str]:
    """A fresh catalog URL: a SQLite file, or a throwaway PostgreSQL database (dropped after)."""
    if not pg:
        yield f"sqlite:///{tmp / f'catalog-{uuid.uuid4().hex[:6]}.sqlite3'}"
        return
    import psycopg

    name = f"adtarget_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def set_status(factory: sessionmaker[Session], li_id: int, status: str) -> None:
    with factory() as s, s.begin():
        s.execute(
            update(LineItem)
            .where(LineItem.id == li_id)
            .values(status=status, version=LineItem.version + 1)
        )


def holds(index: PatchedIndex, li_id: int, kind: str, rule_before: Any) -> bool:
    """Whether the served index already reflects the change just committed."""
    item = index.live_item(li_id)  # a resume serves the base's version again
    if kind == "pause":
        return item is None
    return item is not None and (kind == "resume" or item.rule is not rule_before)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_size(url: str, n: int, changes: int, runs: int, seed: int) -> dict[str, Any]:
    engine = make_engine(url)
    migrate(url, engine=engine)
    factory = make_session_factory(engine)
    populate(factory, n, seed)
    rng = random.Random(seed)
    baseline = IndexHolder.from_session_factory(factory, follow=False)
    cold_s, _ = timed(baseline.refresh)
    warm = []
    for _ in range(runs):
        retarget(factory, rng.randint(1, n), rng)
        warm.append(timed(baseline.refresh)[0])
    del baseline

    patch_s: list[float] = []
    holder = IndexHolder.from_session_factory(
        factory,
        poll_seconds=60.0,
        check_seconds=3600.0,
        patch_max=max(2000, changes * 2),
        on_patch=lambda s, _n: patch_s.append(s),
        freeze_gc=True,  # as `adtarget serve` runs it (ADTARGET_INDEX_FREEZE_GC, default on)
    )
    holder.start()
    served: list[float] = []
    me = threading.get_ident()
    assert me == threading.main_thread().ident
    paused = 1
    cpu0, mine0 = time.process_time(), time.thread_time()
    try:
        for k in range(changes):
            kind = ("pause", "resume", "retarget")[k % 3]
            li_id = paused if kind == "resume" else rng.randint(1, n)
            before = holder.current().live_item(li_id)
            rule_before = before.rule if before is not None else None
            if kind == "pause":
                set_status(factory, li_id, "paused")
                paused = li_id
            elif kind == "resume":
                set_status(factory, li_id, "active")
            else:
                retarget(factory, li_id, rng)
            t0 = time.perf_counter()
            while not holds(holder.current(), li_id, kind, rule_before):
                if time.perf_counter() - t0 > 30:
                    raise SystemExit(f"change {k} ({kind} {li_id}) not served after 30 s")
                time.sleep(0.0002)
            served.append(time.perf_counter() - t0)
        others_cpu = (time.process_time() - cpu0) - (time.thread_time() - mine0)
        agree = not differences(
            holder.current(), IndexHolder.from_session_factory(factory, follow=False).refresh()
        )
    finally:
        holder.stop()
        engine.dispose()
    return {
        "n": n,
        "cold_rebuild_s": cold_s,
        "warm_rebuild_s": statistics.median(warm),
        "served_p50_s": pct(served, 0.5),
        "served_p99_s": pct(served, 0.99),
        "cpu_per_change_s": others_cpu / changes,
        "patch_p50_s": statistics.median(patch_s) if patch_s else float("nan"),
        "patches": holder.patches,
        "rebuilds": holder.generation,
        "agree": agree,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--line-items", default="10000,100000", help="comma-separated sizes")
    ap.add_argument("--changes", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3, help="warm rebuilds for the baseline")
    ap.add_argument("--pg", action="store_true", help="PostgreSQL on 127.0.0.1:5432 (NOTIFY)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.line_items.split(",") if x]
    backend = "PostgreSQL (LISTEN/NOTIFY)" if args.pg else "SQLite (PRAGMA data_version)"
    print(f"catalog change -> served, {backend}, {args.changes} changes per size")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            with catalog(args.pg, Path(tmp)) as url:
                r = run_size(url, n, args.changes, args.runs, args.seed)
            ok &= r["agree"] and r["rebuilds"] == 1
            ratio = r["warm_rebuild_s"] / max(r["cpu_per_change_s"], 1e-9)
            rows = [
                ("baseline: full rebuild per change (warm, p50)", f"{r['warm_rebuild_s']:.3f} s"),
                ("baseline: full rebuild from scratch (cold)", f"{r['cold_rebuild_s']:.3f} s"),
                ("commit -> served p50", f"{r['served_p50_s'] * 1e3:.2f} ms"),
                ("commit -> served p99", f"{r['served_p99_s'] * 1e3:.2f} ms"),
                ("CPU per change per worker", f"{r['cpu_per_change_s'] * 1e3:.2f} ms"),
                ("patch (load + build delta + swap) p50", f"{r['patch_p50_s'] * 1e3:.2f} ms"),
                ("ratio (rebuild / patch CPU per change)", f"{ratio:.1f} x"),
                ("patches / rebuilds", f"{r['patches']} / {r['rebuilds']}"),
                ("patched index equals a rebuild", "yes" if r["agree"] else "NO"),
            ]
            print(f"\n{n:,} live line items")
            for label, value in rows:
                print(f"  {label:<46} {value:>12}")
    if not ok:
        raise SystemExit("the patched index disagrees with a rebuild, or a change rebuilt it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
