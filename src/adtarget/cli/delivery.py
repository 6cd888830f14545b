"""``adtarget events import FILE`` and ``adtarget report ...``: delivery intake and reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from adtarget.cli.container import cli_container
from adtarget.cli.errors import fail
from adtarget.cli.report_view import (
    chart_title,
    print_report_table,
    report_currency,
    report_labels,
    report_table,
    window_text,
)
from adtarget.delivery.chart import draw_chart
from adtarget.delivery.files import count_rows, open_events, read_batches
from adtarget.delivery.reports import (
    default_window,
    report_columns,
    report_names,
    rows_to_arrow,
    rows_to_csv,
    run_report,
)
from adtarget.delivery.service import IngestResult, catalog_lookup, ingest_events, retention_today
from adtarget.errors import AdtargetError

REJECTED_EXIT = 3
"""``events import`` exit status when some rows were rejected (the others are recorded)."""

events_app = typer.Typer(help="Delivery events: import files of events.", no_args_is_help=True)


def _fail(err: AdtargetError) -> None:
    raise fail(err)


@events_app.command("import")
def import_events(
    file: Annotated[
        str,
        typer.Argument(
            help="NDJSON, JSON array, CSV or Parquet file: a path or s3://bucket/key.",
            show_default=False,
        ),
    ],
    no_catalog: Annotated[
        bool,
        typer.Option(
            "--no-catalog",
            help="Do not check line items against the catalog (events must then "
            "carry campaign_id and advertiser_id).",
        ),
    ] = False,
    delimiter: Annotated[
        str, typer.Option("--delimiter", help="CSV delimiter, e.g. ';' (tab: '\\t' or tab).")
    ] = ",",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Import delivery events; duplicates are counted once, bad rows are listed with reasons."""
    delimiter = "\t" if delimiter in ("\\t", "tab") else delimiter

    container = cli_container()
    total = IngestResult()
    try:
        source = open_events(file)
        lookup = None
        if not no_catalog:
            lookup = catalog_lookup(container.session_factory)
        store = container.event_store()
        try:
            progress = Progress(
                TextColumn("importing {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                transient=True,
                console=_stderr_console(),
                disable=as_json,
            )
            with progress:
                task = progress.add_task(source.name, total=count_rows(source))
                offset = 0
                for batch in read_batches(source, delimiter=delimiter):
                    size = (
                        len(next(iter(batch.values()), []))
                        if isinstance(batch, dict)
                        else len(batch)
                    )
                    total.merge(
                        ingest_events(store=store, events=batch, lookup=lookup, index_offset=offset)
                    )
                    offset += size
                    progress.advance(task, size)
        finally:
            store.close()
    except AdtargetError as err:
        _fail(err)
        return
    if as_json:
        shown = str(source.local) if source.local is not None else source.uri
        typer.echo(json.dumps({"file": shown, **total.to_dict()}))
        if total.rejected:
            raise typer.Exit(REJECTED_EXIT)
        return
    typer.echo(
        f"{source.name}: {total.accepted} accepted, {total.duplicates} duplicates, "
        f"{len(total.rejected)} rejected"
    )
    for item in total.rejected[:20]:
        typer.echo(f"  row {item['index']}: {item['reason']}", err=True)
    if len(total.rejected) > 20:
        typer.echo(f"  ... and {len(total.rejected) - 20} more (use --json for all)", err=True)
    if total.rejected:  # the accepted rows are recorded; a script must still notice the rest
        raise typer.Exit(REJECTED_EXIT)


@events_app.command("prune")
def prune(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Apply retention now: drop event days older than ADTARGET_EVENTS_RETENTION_DAYS."""

    container = cli_container()
    settings = container.settings
    try:
        store = container.event_store(maintain=False)
        try:
            dropped = store.apply_retention(retention_today())
        finally:
            store.close()
    except AdtargetError as err:
        _fail(err)
        return
    days = [d.isoformat() for d in dropped]
    if as_json:
        typer.echo(
            json.dumps({"dropped_days": days, "retention_days": settings.events_retention_days})
        )
    else:
        typer.echo(f"dropped {len(days)} day(s)" + (f": {', '.join(days)}" if days else ""))


def _stderr_console() -> Console:
    return Console(stderr=True)


FORMATS = ("table", "csv", "json", "parquet")


def report(
    from_: Annotated[
        str | None,
        typer.Option("--from", help="First day (YYYY-MM-DD) or hour, UTC. Default: 6 days ago."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Last day included, or the exclusive end hour. Default: today."),
    ] = None,
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by",
            help="Comma-separated: hour, day, advertiser, campaign, line_item, creative, "
            "geo (the event's country), device; e.g. campaign,day.",
        ),
    ] = "day",
    metrics: Annotated[
        str,
        typer.Option(
            "--metrics", help="e.g. impressions,clicks,spend,ctr,completion_rate,ecpm,reach"
        ),
    ] = "impressions,clicks,spend",
    advertiser: Annotated[
        str | None, typer.Option("--advertiser", help="Only this advertiser.")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="table | csv | json | parquet (parquet needs --out)")
    ] = "table",
    as_csv: Annotated[bool, typer.Option("--csv", help="Same as --format csv.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="Also draw a PNG time series.")
    ] = None,
) -> None:
    """Delivery report over any grouping: time, advertiser, campaign, line item, creative, geo.

    Without --from/--to it covers the last 7 days up to today (UTC). Tables name the
    advertisers, campaigns, line items and creatives beside their ids.
    """

    if as_csv and as_json:
        _fail(AdtargetError("--csv and --json exclude each other", field="format"))
    fmt = "csv" if as_csv else "json" if as_json else fmt
    if fmt not in FORMATS:
        _fail(
            AdtargetError(
                f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}", field="format"
            )
        )
    if fmt == "parquet" and out is None:
        _fail(AdtargetError("--format parquet writes a file: add --out FILE.parquet", field="out"))
    first, last = default_window()
    start = from_ if from_ is not None else first.isoformat()
    end = to if to is not None else last.isoformat()
    try:
        columns = report_columns(group_by, metrics)
        groups, names = report_names(group_by, metrics)
        store = cli_container().event_store()
        try:
            rows = run_report(
                store=store,
                start=start,
                end=end,
                group_by=group_by,
                metrics=metrics,
                advertiser_id=advertiser,
            )
        finally:
            store.close()
        needs_names = chart is not None or (fmt == "table" and out is None)
        labels = report_labels(rows, groups) if needs_names else {}
        currency = report_currency(advertiser) if needs_names and "spend" in names else None
        if chart is not None:
            draw_chart(
                rows,
                group_by=groups,
                metrics=names,
                path=chart,
                title=chart_title(groups, names, start, end),
                labels=labels,
                currency=currency,
            )
    except AdtargetError as err:
        _fail(err)
        return
    if not rows:
        typer.echo(f"no delivery events from {window_text(start, end)}", err=True)
    if fmt == "parquet" and out is not None:
        pq.write_table(rows_to_arrow(rows, columns), out)
        typer.echo(f"wrote {len(rows)} rows to {out}", err=True)
    elif fmt == "table" and out is None:
        if rows:
            title = f"delivery {window_text(start, end)}"
            print_report_table(report_table(rows, columns, labels, title=title, currency=currency))
    else:
        if fmt == "json":
            text = json.dumps({"rows": rows}, default=str) + "\n"
        elif fmt == "csv":
            text = rows_to_csv(rows, columns)
        else:
            text = rows_to_csv(rows, columns).replace(",", "\t")
        if out is not None:
            out.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {len(rows)} rows to {out}", err=True)
        else:
            sys.stdout.write(text)
    if chart is not None:
        typer.echo(f"chart saved to {chart}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``events import`` and ``report`` to the ``adtarget`` command."""
    app.add_typer(events_app, name="events")
    app.command("report")(report)
