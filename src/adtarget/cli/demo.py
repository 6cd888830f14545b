"""``adtarget demo``: the whole product once, end to end, on the embedded default.

Why in process and through the real services: a newcomer sees every capability (catalog with
undo, upload -> exact audiences, decisions with explain, delivery -> report and chart) working
on SQLite and files, with no server, and every step is the same code the API and CLI run. It is
safe to re-run: names get a run suffix, and the seeded upload is recognised as already published.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from adtarget.audience.service import overlap_rules, size_rule
from adtarget.catalog.service import get, page
from adtarget.cli.audience import sizing_context
from adtarget.cli.container import cli_container
from adtarget.cli.demo_data import delivery_events, write_population
from adtarget.cli.ingest import run_with_bar
from adtarget.cli.report_view import (
    chart_title,
    print_report_table,
    report_currency,
    report_labels,
    report_table,
    window_text,
)
from adtarget.decision.index_holder import IndexHolder
from adtarget.decision.models import DecisionRequest
from adtarget.delivery.chart import draw_chart
from adtarget.delivery.reports import default_window, report_names, run_report
from adtarget.delivery.service import catalog_lookup, ingest_events
from adtarget.ingest.jobs import recover_stale_jobs, submit_upload
from adtarget.settings import Settings

console = Console()

RULES = {
    "sci-fi fans in North America": 'country in ("US", "CA") and genres has any ("scifi")',
    "young premium": 'age between 18 and 34 and plan in ("standard", "premium")',
    "kids, not premium": 'genres has any ("kids") and not plan = "premium"',
}


def _step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    console.print(table)


def _upload(settings: Settings, factory: Any, users: int) -> dict[str, Any]:

    path = write_population(settings.data_dir / "demo" / f"users-{users}.parquet", users)
    recover_stale_jobs(settings=settings, session_factory=factory)
    job = submit_upload(
        settings=settings, session_factory=factory, path=path, mode="replace", actor="demo"
    )
    if job["status"] == "queued":
        job = run_with_bar(job["id"], settings, factory, quiet=False)
    note = " (same file as last run: nothing published twice)" if job.get("idempotent") else ""
    console.print(
        f"upload {job['id']}: [bold]{job['status']}[/]{note}; rows read "
        f"{job['rows_read']:,}, accepted {job['rows_accepted']:,}, rejected "
        f"{job['rows_rejected']:,}; snapshot {job['snapshot']}"
    )
    if job["status"] != "succeeded":
        raise typer.Exit(1)
    return job


def _audiences(settings: Settings) -> None:

    ctx = sizing_context()
    rows = []
    for name, rule in RULES.items():
        started = time.perf_counter()
        result = size_rule(rule_text=rule, **ctx)
        ms = (time.perf_counter() - started) * 1000
        rows.append(
            [name, rule, f"{result['count']:,}" if result["count"] else "below min", f"{ms:.2f} ms"]
        )
    _table("Exact audience sizes (bitmap evaluator)", ["audience", "rule", "users", "time"], rows)
    over = overlap_rules(rules=list(RULES.values()), **ctx)
    names = list(RULES)
    _table(
        "Overlap (users in both)",
        ["", *names],
        [
            [n, *[f"{c:,}" if c is not None else "<min" for c in row]]
            for n, row in zip(names, over["matrix"], strict=True)
        ],
    )


#: Active campaigns read per page, and so at most this many paused per bulk command: a data dir
#: with many campaigns is walked in bounded steps instead of one unbounded read and transaction.
PAUSE_PAGE = 500
DEMO_CAMPAIGN = "Winter launch "
DEFAULT_USERS = 20_000
"""The demo population (the README says this figure)."""
DEMO_REQUESTS = 201
"""Ad requests the demo answers: 200 known users and one unknown (the README says it)."""


def _pause_earlier_runs(writer: Any, factory: Any, *, page_size: int = PAUSE_PAGE) -> int:
    """Pause campaigns a previous demo run left active, so this run's line items are the ones
    that serve; returns how many were paused.

    Active campaigns are read a page at a time by ascending id (keyset, so pausing does not shift
    the pages) and each page's demo campaigns are paused as one bulk command (``adtarget undo``
    brings a page back)."""
    paused = 0
    after: int | None = None
    while True:
        with factory() as session:
            rows: list[Any] = page(
                session=session, kind="campaign", status="active", after=after, limit=page_size
            )
            ids = [c.id for c in rows if c.name.startswith(DEMO_CAMPAIGN)]
        if ids:
            writer.bulk("campaign", ids, {"status": "paused"})
            paused += len(ids)
        if len(rows) < page_size:
            break
        after = rows[-1].id
    if paused:
        console.print(f"paused {paused} campaign(s) left active by an earlier demo run")
    return paused


def _catalog(writer: Any, suffix: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    adv = writer.create("advertiser", {"name": f"Acme Streaming {suffix}"})
    camp = writer.create(
        "campaign",
        {
            "advertiser_id": adv["id"],
            "name": f"{DEMO_CAMPAIGN}{suffix}",
            "budget_total": 5000,
            "start": (now - timedelta(days=8)).isoformat(),
            "end": (now + timedelta(days=30)).isoformat(),
            "frequency_cap": {"count": 3, "window_seconds": 3600},
        },
    )
    creative = writer.create(
        "creative",
        {
            "advertiser_id": adv["id"],
            "name": f"Trailer 30s {suffix}",
            "format": "video_30s",
            "attributes": {"media_url": "https://cdn.example.com/trailer.mp4", "duration": 30},
        },
    )
    items = []
    for (name, rule), (priority, bid) in zip(
        RULES.items(), [(2, 12.5), (2, 18.0), (5, 9.0)], strict=True
    ):
        li = writer.create(
            "line_item",
            {
                "campaign_id": camp["id"],
                "name": f"{name} {suffix}",
                "targeting": rule,
                "priority": priority,
                "bid_cpm": bid,
                "formats": ["video_30s"],
            },
        )
        writer.attach_creative(li["id"], creative["id"])
        items.append(li)
    writer.update("campaign", camp["id"], {"status": "active"})
    writer.bulk("line_item", [li["id"] for li in items], {"status": "active"})
    _table(
        "Catalog (every change is an undoable command)",
        ["kind", "id", "name", "detail"],
        [
            ["advertiser", adv["id"], adv["name"], ""],
            [
                "campaign",
                camp["id"],
                camp["name"],
                f"budget {float(camp['budget_total']):,.2f} {camp['currency']}",
            ],
            ["creative", creative["id"], creative["name"], "video_30s"],
            *[
                [
                    "line item",
                    li["id"],
                    li["name"],
                    f"priority {li['priority']}, bid {float(li['bid_cpm']):,.2f} CPM",
                ]
                for li in items
            ],
        ],
    )
    return {"advertiser": adv, "campaign": camp, "creative": creative, "items": items}


def _undo(writer: Any, campaign: dict[str, Any]) -> None:
    typo = writer.update("campaign", campaign["id"], {"budget_total": 50000})
    console.print(f"oops: budget typed as {float(typo['budget_total']):,.2f} (extra zero)")
    undone = writer.undo()

    with cli_container().session_factory() as session:
        budget = get(session=session, kind="campaign", obj_id=campaign["id"]).budget_total  # type: ignore[attr-defined]
    console.print(
        f"adtarget undo -> undid '{undone['undone']['description']}'; budget is "
        f"{float(budget):,.2f} again"
    )
    if undone.get("note"):
        console.print(f"  note: {undone['note']}")
    for entry in writer.history(limit=4):
        mark = " (undone)" if entry.get("undone_at") else ""
        console.print(f"  history: {entry['description']}{mark}")


def _decisions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    engine = cli_container().decision_engine()  # wired as `serve` and `forecast` wire it
    try:
        holder = engine.index_holder
        assert isinstance(holder, IndexHolder)  # what from_settings builds
        holder.refresh()
        mine = {li["id"] for li in items}
        served: list[dict[str, Any]] = []
        rows: list[list[Any]] = []
        users = [f"u{i:07d}" for i in range(DEMO_REQUESTS - 1)]
        for user in [*users, "nobody-known"]:
            ctx = {"device": "tv"}
            result = engine.decide(
                DecisionRequest(
                    user_id=user, context=ctx, limit=2, formats=("video_30s",), explain=True
                )
            )
            for d in result.decisions:
                if d.line_item_id in mine:
                    served.append({**d.to_dict(), "user_id": user, **ctx})
            why = [
                f"{e['line_item_id']}: {e['reason']} ({e['detail']})"
                for e in (result.explain or {}).get("not_served", [])
                if e["line_item_id"] in mine
            ][:1]
            if (len(rows) < 5 and result.decisions) or user == "nobody-known":
                rows.append(
                    [
                        user,
                        ", ".join(str(d.line_item_id) for d in result.decisions) or "-",
                        "; ".join(why),
                        "yes" if result.degraded else "no",
                    ]
                )
        console.print(
            f"{len(users) + 1} requests with context device=tv, {len(served)} ads served; "
            "some of them:"
        )
        _table(
            "Decisions (explain shows why the others did not serve)",
            ["user", "line items served", "not served (first reason)", "degraded"],
            rows,
        )
        return served
    finally:
        engine.close()


def _delivery(
    settings: Settings, factory: Any, served: list[dict[str, Any]], advertiser_id: int
) -> None:

    store = cli_container().event_store()
    result = ingest_events(
        store=store, events=delivery_events(served), lookup=catalog_lookup(factory)
    )
    body = result.to_dict()
    rejected = "; ".join(f"row {r['index']}: {r['reason']}" for r in body["rejected"][:1])
    console.print(
        f"POST /v1/events -> accepted {body['accepted']}, duplicates {body['duplicates']}, "
        f"rejected {len(body['rejected'])}" + (f" ({rejected})" if rejected else "")
    )
    first, last = default_window()
    group_by, metrics = (
        ["day", "line_item"],
        ["impressions", "completes", "clicks", "spend", "reach"],
    )
    rows = run_report(
        store=store,
        start=first,
        end=last,
        group_by=group_by,
        metrics=metrics,
        advertiser_id=str(advertiser_id),
    )
    groups, names = report_names(group_by, metrics)
    labels = report_labels(rows, groups)
    currency = report_currency(str(advertiser_id))
    print_report_table(
        report_table(
            rows[-8:],
            [*groups, *names],
            labels,
            title=f"adtarget report --group-by day,line_item --advertiser {advertiser_id}"
            f"  ({window_text(first, last)}, last 8 rows)",
            currency=currency,
        )
    )
    chart = draw_chart(
        rows,
        group_by=groups,
        metrics=["impressions", "spend"],
        path=settings.data_dir / "demo" / "report.png",
        title=chart_title(groups, ["impressions", "spend"], first, last),
        labels=labels,
        currency=currency,
    )
    console.print(f"chart: {chart}")


def demo(
    users: Annotated[
        int, typer.Option("--users", help="Size of the sample population.")
    ] = DEFAULT_USERS,
) -> None:
    """Run the whole product once on the embedded default (SQLite + files, no server)."""
    began = time.perf_counter()
    container = cli_container()
    settings = container.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    factory = container.session_factory
    suffix = datetime.now(UTC).strftime("%H%M%S")
    console.print(f"adtarget demo in [bold]{Path(settings.data_dir).resolve()}[/]")
    _step("1. Upload user features (Parquet) -> audience snapshot")
    _upload(settings, factory, users)
    _step("2. Exact audiences in milliseconds")
    _audiences(settings)
    _step("3. Catalog: advertiser, campaign, creative, line items")
    writer = container.writer("demo")
    _pause_earlier_runs(writer, factory)
    objs = _catalog(writer, suffix)
    _step("4. Undo a mistake")
    _undo(writer, objs["campaign"])
    _step("5. Ad decisions")
    served = _decisions(objs["items"])
    if served:
        _step("6. Delivery events -> report and chart")
        _delivery(settings, factory, served, objs["advertiser"]["id"])
    console.print(
        f"\ndemo steps done in {time.perf_counter() - began:.1f} s "
        "(plus the start-up of Python and the adtarget command)"
    )
    _step("Next")
    console.print(
        "adtarget serve   # the HTTP API (decisions, catalog, audiences, reports)\n"
        "                 # and the console: open http://127.0.0.1:8000/console\n"
        "adtarget --help  # every command; docs/ has the how-to"
    )


def register(app: typer.Typer) -> None:
    """Add ``adtarget demo`` to the main app."""
    app.command("demo")(demo)
