"""``adtarget forecast``: what a proposed or changed line item would serve, from the shell.

Why the CLI's composition root: the forecast replays the sampled request log through an engine
wired as the server wires it (``CliContainer.decision_engine``: the catalog, profile store,
delivered spend and the live line items), so the shell and ``POST /v1/forecast`` answer alike. With
``--server URL`` it asks a running server instead, as an async forecast job, and follows the
job's progress (``GET /v1/forecast/jobs/{id}``). Exit codes: 0 ok, 2 for a field that does not
validate (named on stderr), 1 otherwise.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from adtarget.cli.container import cli_container
from adtarget.cli.errors import fail
from adtarget.decision.forecast_service import forecast_line_item
from adtarget.decision.index_holder import IndexHolder
from adtarget.decision.request_stores import request_store_for
from adtarget.errors import AdtargetError, InvalidValue


def _body(
    line_item: int | None,
    changes: str | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    if line_item is not None:
        try:
            parsed = json.loads(changes) if changes else {}
        except json.JSONDecodeError as exc:
            raise InvalidValue(f"--changes is not JSON: {exc}", field="changes") from None
        extra = {k: v for k, v in fields.items() if v is not None}
        return {"line_item_id": line_item, "changes": {**parsed, **extra}}
    return {k: v for k, v in fields.items() if v is not None}


POLL_S = 0.2


def _bar(as_json: bool) -> Progress:
    """The Rich progress bar on stderr (only on a terminal, never with ``--json``)."""
    return Progress(
        TextColumn("{task.description:22s}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(file=sys.stderr),
        disable=as_json or not sys.stderr.isatty(),
    )


def _stage_bar(bar: Progress) -> Callable[[str, int, int], None]:
    """``progress(stage, done, total)`` drawing one bar per stage."""
    tasks: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return progress


def _answer_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON of a 2xx answer; an error answer raised as the error it names."""
    if response.status_code < 400:
        out: dict[str, Any] = response.json()
        return out
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = {"message": f"HTTP {response.status_code}: {response.text[:200]}"}
    cls = InvalidValue if response.status_code == 422 else AdtargetError
    raise cls(str(error.get("message")), field=error.get("field"))


def _remote(body: dict[str, Any], server: str, api_key: str | None, as_json: bool) -> Any:
    """Ask ``server`` for the forecast as a job and follow its progress until it ends."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=30) as http:
            job = _answer_of(http.post("/v1/forecast", json={**body, "async": True}))
            with _bar(as_json) as bar:
                progress = _stage_bar(bar)
                while job["status"] not in ("done", "failed"):
                    time.sleep(POLL_S)
                    job = _answer_of(http.get(job["status_url"]))
                    p = job.get("progress") or {}
                    if p.get("total"):
                        progress(p["stage"], p["done"], p["total"])
    except httpx.HTTPError as exc:
        raise AdtargetError(f"cannot reach {server}: {exc}", field="server") from None
    if job["status"] == "failed":
        error = job.get("error") or {}
        raise AdtargetError(str(error.get("message")), field=error.get("field"))
    return job["result"]


def _print(answer: dict[str, Any], console: Console) -> None:
    if answer.get("no_history"):
        console.print(f"[bold]No forecast:[/bold] {answer['message']}")
        return
    conf = answer["confidence"]
    console.print(
        f"[bold]{answer['forecast_impressions']:,}[/bold] impressions "
        f"(95%: {conf['low']:,}–{conf['high']:,}) to {answer['unique_users']:,} users; "
        f"{answer['matched_requests']:,} requests match, "
        f"{answer['available_impressions']:,} not taken by higher-ranked line items "
        f"(sample rate {answer['sample_rate']})"
    )
    days = Table("day", "history day", "matched", "forecast")
    for d in answer["by_day"]:
        days.add_row(
            d["date"], d["history_day"], f"{d['matched_requests']:,}",
            f"{d['forecast_impressions']:,}",
        )  # fmt: skip
    console.print(days)
    if answer["contended"]:
        rivals = Table("line item", "lost to it", "taken from it")
        for c in answer["contended"]:
            rivals.add_row(
                str(c["line_item_id"]),
                f"{c['impressions_lost_to_it']:,}",
                f"{c['impressions_taken_from_it']:,}",
            )
        console.print(rivals)


def forecast(
    line_item: Annotated[
        int | None, typer.Option("--line-item", help="Forecast this catalog line item")
    ] = None,
    changes: Annotated[
        str | None, typer.Option(help="JSON changes to --line-item, e.g. '{\"priority\": 3}'")
    ] = None,
    targeting: Annotated[str | None, typer.Option(help="Rule text")] = None,
    start: Annotated[str | None, typer.Option(help="Flight start, ISO 8601 UTC")] = None,
    end: Annotated[str | None, typer.Option(help="Flight end, ISO 8601 UTC")] = None,
    priority: Annotated[int | None, typer.Option(help="1 (first) to 16")] = None,
    bid_cpm: Annotated[float | None, typer.Option("--bid-cpm")] = None,
    cap: Annotated[
        str | None, typer.Option(help="Frequency cap COUNT/SECONDS, e.g. 3/86400")
    ] = None,
    formats: Annotated[str | None, typer.Option(help="Comma-separated ad formats")] = None,
    budget: Annotated[float | None, typer.Option()] = None,
    creative_duration: Annotated[
        float | None,
        typer.Option(help="Seconds of its creative: lets it fill slots of logged ad breaks"),
    ] = None,
    campaign: Annotated[int | None, typer.Option("--campaign", help="Campaign id")] = None,
    server: Annotated[
        str | None,
        typer.Option(
            envvar="ADTARGET_URL",
            help="Ask this running server (e.g. http://127.0.0.1:8000) as an async job",
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="ADTARGET_API_KEY", help="With --server")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Forecast impressions for a proposed line item (or --line-item ID with --changes)."""

    try:
        frequency_cap = None
        if cap is not None:
            count, _, window = cap.partition("/")
            if not (count.isdigit() and window.isdigit()):
                raise InvalidValue("--cap is COUNT/SECONDS, e.g. 3/86400", field="frequency_cap")
            frequency_cap = {"count": int(count), "window_seconds": int(window)}
        fields = {
            "targeting": targeting, "start": start, "end": end, "priority": priority,
            "bid_cpm": bid_cpm, "frequency_cap": frequency_cap, "budget": budget,
            "formats": [f.strip() for f in formats.split(",") if f.strip()] if formats else None,
            "campaign_id": campaign, "creative_duration": creative_duration,
        }  # fmt: skip
        body = _body(line_item, changes, fields)
        if server is not None:
            answer = _remote(body, server, api_key, as_json)
            if as_json:
                typer.echo(json.dumps(answer, default=str))
            else:
                _print(answer, Console())
            return
        container = cli_container()
        settings = container.settings
        engine = container.decision_engine()
        try:
            holder = engine.index_holder
            assert isinstance(holder, IndexHolder)  # what from_settings builds
            holder.refresh()
            bar = _bar(as_json)
            progress = _stage_bar(bar)
            with bar, container.session_factory() as session:
                answer = forecast_line_item(
                    body,
                    session=session,
                    engine=engine,
                    store=request_store_for(settings),
                    lookback_days=settings.forecast_lookback_days,
                    progress=progress,
                )
        finally:
            engine.close()
    except AdtargetError as err:
        raise fail(err, 2 if isinstance(err, InvalidValue) else 1) from None
    if as_json:
        typer.echo(json.dumps(answer, default=str))
    else:
        _print(answer, Console())


def register(app: typer.Typer) -> None:
    """Add ``forecast`` to the ``adtarget`` command."""
    app.command("forecast")(forecast)
