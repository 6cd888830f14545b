"""Benchmark: the catalog's hot lookups with the indexes docs/data-model.md argues for, and without.

Builds a migrated catalog (SQLite file by default, or ``--url`` PostgreSQL) with N line items
(5% live), commands for 50 actors and upload jobs, then times, p50 over repeated runs:
- live line items (what the decision index loads): ``status = 'active'`` joined to campaigns;
- the undo lookup: the newest ``done`` command of an actor who last acted long ago;
- the upload dedup lookup: a job by ``(file_checksum, mode)``;
each with its index and again after dropping it (the baseline, same data, same process).
Run: ``python bench/bench_catalog.py --line-items 100000``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from adtarget.catalog.db import make_engine, migrate

NOW = datetime(2026, 6, 1, tzinfo=UTC)
QUERIES: dict[str, tuple[str, str, str]] = {
    # name: (sql, index name, CREATE INDEX to put it back)
    "live_line_items": (
        "SELECT li.id, li.priority, li.bid_cpm, li.targeting_json FROM line_items li "
        "JOIN campaigns c ON c.id = li.campaign_id "
        "WHERE li.status = 'active' AND c.status = 'active' AND c.\"end\" > :now",
        "ix_line_items_status_campaign_id",
        "CREATE INDEX ix_line_items_status_campaign_id ON line_items (status, campaign_id)",
    ),
    "undo_lookup": (
        "SELECT id FROM command_log WHERE actor = :actor AND state = 'done' "
        "ORDER BY id DESC LIMIT 1",
        "ix_command_log_actor_state_id",
        "CREATE INDEX ix_command_log_actor_state_id ON command_log (actor, state, id)",
    ),
    "upload_dedup": (
        "SELECT id FROM upload_jobs WHERE file_checksum = :sum AND mode = 'replace'",
        "ix_upload_jobs_file_checksum_mode",
        "CREATE INDEX ix_upload_jobs_file_checksum_mode ON upload_jobs (file_checksum, mode)",
    ),
}


def populate(engine: Engine, *, line_items: int, commands: int, uploads: int) -> None:
    """Bulk-insert a catalog of the given size through Core (fast, no validation needed)."""
    n_campaigns = max(1, line_items // 100)
    ts = NOW.isoformat() if engine.dialect.name != "sqlite" else "2026-06-01 00:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO advertisers (id, name, status, version, created_at, updated_at) "
                "VALUES (1, 'bench', 'active', 1, :t, :t)"
            ),
            {"t": ts},
        )
        conn.execute(
            text(
                "INSERT INTO campaigns (id, advertiser_id, name, status, objective, currency, "
                'budget_total, start, "end", timezone, pacing_mode, version, created_at, '
                "updated_at) VALUES (:id, 1, :name, :status, 'awareness', 'USD', 1000, :s, :e, "
                "'UTC', 'even', 1, :t, :t)"
            ),
            [
                {
                    "id": i + 1,
                    "name": f"c{i}",
                    "status": "active" if i % 2 == 0 else "paused",
                    "s": NOW - timedelta(days=30),
                    "e": NOW + timedelta(days=30),
                    "t": ts,
                }
                for i in range(n_campaigns)
            ],  # fmt: skip
        )
        conn.execute(
            text(
                "INSERT INTO line_items (campaign_id, name, status, priority, bid_cpm, "
                "pacing_mode, targeting, formats, version, created_at, updated_at) VALUES "
                "(:c, :name, :status, 8, 2.5, 'even', '', '[]', 1, :t, :t)"
            ),
            [
                {
                    "c": min(i // 100, n_campaigns - 1) + 1,
                    "name": f"li{i}",
                    "status": "active" if i % 10 == 0 else "archived",
                    "t": ts,
                }
                for i in range(line_items)
            ],  # fmt: skip
        )
        conn.execute(
            text(
                "INSERT INTO command_log (actor, kind, description, payload, state, created_at) "
                "VALUES (:a, 'update', '', '{}', :s, :t)"
            ),
            # "quiet" last acted long ago: the undo lookup must not walk everyone's history
            [{"a": "quiet", "s": "done", "t": ts}]
            + [
                {"a": f"actor{i % 50}", "s": "done" if i % 7 else "undone", "t": ts}
                for i in range(commands)
            ],
        )
        conn.execute(
            text(
                "INSERT INTO upload_jobs (id, status, mode, source_path, file_checksum, dry_run, "
                "rows_read, rows_accepted, rows_rejected, actor, created_at, version) VALUES "
                "(:id, 'succeeded', 'replace', '/x', :sum, false, 0, 0, 0, 'a', :t, 1)"
            ),
            [{"id": f"job-{i:08d}", "sum": f"{i:064x}", "t": ts} for i in range(uploads)],
        )
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))


def _fetch_all(conn: Connection, sql: str, params: dict[str, Any]) -> list[Any]:
    """Every row of ``sql`` (what one timed query does)."""
    return list(conn.execute(text(sql), params).all())


def p50_ms(fn: Callable[[], Any], runs: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def run(
    url: str | None, *, line_items: int, commands: int, uploads: int, runs: int
) -> dict[str, Any]:
    """Build the catalog and time each query with and without its index."""
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        migrate(url)
        engine = make_engine(url)
        populate(engine, line_items=line_items, commands=commands, uploads=uploads)
        params = {"now": NOW, "actor": "quiet", "sum": f"{uploads // 2:064x}"}
        result: dict[str, Any] = {"backend": engine.dialect.name, "line_items": line_items}
        for name, (sql, index, create) in QUERIES.items():
            with engine.connect() as conn:
                rows = len(conn.execute(text(sql), params).all())
                with_ix = p50_ms(partial(_fetch_all, conn, sql, params), runs)
            with engine.begin() as conn:
                conn.execute(text(f"DROP INDEX {index}"))
            with engine.connect() as conn:
                without = p50_ms(partial(_fetch_all, conn, sql, params), runs)
                assert len(conn.execute(text(sql), params).all()) == rows
            with engine.begin() as conn:
                conn.execute(text(create))
            result[name] = {"rows": rows, "indexed_ms": with_ix, "scan_ms": without}
        engine.dispose()
    return result


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print a table with the speed-up against the scan baseline."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--line-items", type=int, default=100_000)
    ap.add_argument("--commands", type=int, default=None, help="default 2 x line items")
    ap.add_argument("--uploads", type=int, default=None, help="default line items / 10")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--url", default=None, help="catalog URL (default: a temp SQLite file)")
    args = ap.parse_args(argv)
    n = args.line_items
    res = run(args.url, line_items=n, commands=args.commands or 2 * n,
              uploads=args.uploads or max(1, n // 10), runs=args.runs)  # fmt: skip
    print(f"catalog lookups on {res['backend']}, {n} line items (p50 of {args.runs} runs)")
    for name in QUERIES:
        r = res[name]
        ratio = r["scan_ms"] / r["indexed_ms"] if r["indexed_ms"] else float("inf")
        print(f"  {name:16s} rows={r['rows']:>7}  indexed p50 {r['indexed_ms']:8.3f} ms"
              f"  no index p50 {r['scan_ms']:8.3f} ms  ({ratio:5.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
