"""``adtarget ingest FILE``: run an upload job in this process, with a progress bar.

Why in-process and not via the API: data engineers run this next to the file in cron or CI; the
job row still lands in the catalog, so ``GET /v1/uploads/{id}`` and undo see it the same way.
Exit code 0 means the job succeeded; anything else prints the reason on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from adtarget.cli.container import cli_actor, cli_container
from adtarget.cli.errors import fail
from adtarget.errors import AdtargetError
from adtarget.ingest.jobs import get_job, recover_stale_jobs, run_upload, submit_upload


def _summary(job: dict[str, Any]) -> str:
    rep = job.get("report") or {}
    lines = [
        f"upload {job['id']}: {job['status']}"
        + (" (dry run)" if job.get("dry_run") else "")
        + (" (same file as this earlier job)" if job.get("idempotent") else ""),
        f"  rows read {job['rows_read']}, accepted {job['rows_accepted']}, "
        f"rejected {job['rows_rejected']}",
    ]
    if job.get("quarantine"):
        lines.append(f"  quarantine: {job['quarantine']}")
    if job.get("snapshot"):
        shards = f" ({job['shards']} shards)" if job.get("shards") else ""
        lines.append(f"  snapshot: {job['snapshot']}{shards}")
    if "match_rate" in rep:
        lines.append(f"  match rate: {rep['match_rate']:.1%}")
    diff = rep.get("diff")
    if diff:
        lines.append(
            f"  would add {diff.get('users_added')}, change {diff.get('users_changed')},"
            f" remove {diff.get('users_removed')} users"
        )
        for name, seg in (diff.get("segments") or {}).items():
            lines.append(f"  segment {name}: {seg.get('before')} -> {seg.get('after')}")
    return "\n".join(lines)


def ingest(
    file: Annotated[
        str,
        typer.Argument(
            help="CSV, Parquet or JSON Lines file of user rows: a path or s3://bucket/key.",
            show_default=False,
        ),
    ],
    mode: Annotated[str, typer.Option("--mode", help="replace | upsert | segment")] = "replace",
    segment: Annotated[
        str | None, typer.Option("--segment", help="Segment name (mode segment).")
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option("--schema", help='JSON {"dim": "type"} for columns not yet registered.'),
    ] = None,
    id_column: Annotated[
        str, typer.Option("--id-column", help="Column holding the user id.")
    ] = "user_id",
    delimiter: Annotated[
        str, typer.Option("--delimiter", help="CSV delimiter, e.g. ';' (tab: '\\t' or tab).")
    ] = ",",
    set_separator: Annotated[
        str, typer.Option("--set-separator", help="Splits set values in CSV cells.")
    ] = "|",
    max_field_chars: Annotated[
        int, typer.Option("--max-field-chars", help="Reject longer cells.")
    ] = 256,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate and report what would change; publish nothing."),
    ] = False,
    hashed: Annotated[
        bool, typer.Option("--hashed", help="Segment ids are SHA-256 hex of user ids.")
    ] = False,
    append: Annotated[
        bool,
        typer.Option(
            "--append", help="Add the list's members to the segment (own TTL) instead of replacing."
        ),
    ] = False,
    ttl: Annotated[
        int | None, typer.Option("--ttl", help="Segment membership TTL in seconds.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the job as one JSON object.")
    ] = False,
    shards: Annotated[
        int | None,
        typer.Option("--shards", help="Build a snapshot of N shards (users placed by id hash)."),
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local | ray: where a sharded snapshot is built.")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster to build on (default ADTARGET_RAY_ADDRESS; 'local' starts one).",
        ),
    ] = None,
) -> None:
    """Upload user features (or a segment list) and publish a new audience snapshot."""

    container = cli_container()
    settings = container.settings
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        factory = container.session_factory
        recover_stale_jobs(settings=settings, session_factory=factory)
        job = submit_upload(
            settings=settings,
            session_factory=factory,
            path=file,
            mode=mode,
            segment=segment,
            actor=cli_actor(settings),
            dry_run=dry_run,
            id_column=id_column,
            schema=schema,
            ttl_seconds=ttl,
            hashed=hashed,
            append=append,
            delimiter="\t" if delimiter in ("\\t", "tab") else delimiter,
            set_separator=set_separator,
            max_field_chars=max_field_chars,
            shards=shards,
            engine=engine,
            ray_address=ray_address,
        )
        if job.get("idempotent") and job["status"] in ("queued", "running"):
            job = _wait_for(job["id"], settings, factory)  # another process runs it: join it
        elif job["status"] == "queued":
            job = run_with_bar(job["id"], settings, factory, quiet=as_json)
    except AdtargetError as err:
        raise fail(err, 2) from None
    if as_json:
        typer.echo(json.dumps(job, default=str))
    else:
        typer.echo(_summary(job))
    if job["status"] != "succeeded":
        typer.echo(f"error: upload failed: {job.get('error')}", err=True)
        raise typer.Exit(1)


def run_with_bar(job_id: str, settings: Any, factory: Any, *, quiet: bool) -> dict[str, Any]:
    """Run the job with a rich progress bar (rows and rows/s) on stderr."""

    bar = Progress(
        TextColumn("{task.fields[stage]:10s}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TextColumn("{task.fields[rejected]} rejected"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        disable=quiet,
        transient=False,
    )
    with bar:
        task = bar.add_task("ingest", total=None, rate="-", rejected=0, stage="reading")

        def progress(p: dict[str, Any]) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{p['rows_read'] / elapsed:,.0f}" if elapsed > 0 else "-"
            bar.update(
                task,
                completed=p["rows_read"],
                total=p.get("total_rows"),
                rate=rate,
                rejected=p["rows_rejected"],
                stage=p.get("stage", "reading"),
            )

        return run_upload(job_id, settings=settings, session_factory=factory, progress=progress)


def _wait_for(job_id: str, settings: Any, factory: Any, poll_s: float = 0.5) -> dict[str, Any]:
    """Poll a job another process is running until it ends (same file submitted twice); if
    that process dies, ``recover_stale_jobs`` marks the job failed and the wait ends."""

    typer.echo(
        f"upload {job_id}: the same file is already being ingested; waiting for it", err=True
    )
    while True:
        job = get_job(job_id, session_factory=factory)
        if job["status"] not in ("queued", "running"):
            job["idempotent"] = True
            return job
        time.sleep(poll_s)
        recover_stale_jobs(settings=settings, session_factory=factory)


def register(app: typer.Typer) -> None:
    """Add ``adtarget ingest`` to the main app."""
    app.command("ingest")(ingest)
