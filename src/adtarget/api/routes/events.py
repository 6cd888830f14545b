"""``POST /v1/events`` (delivery intake) and ``GET /v1/reports`` (delivery reports).

Why the body is parsed here and not by a pydantic model: one malformed event must not fail the
batch. The route splits JSON / NDJSON itself, hands the objects to ``ingest_events`` and answers
``{"accepted", "duplicates", "rejected": [{"index", "field", "reason"}]}`` with 200. Role checks
come from the router dependency in ``api/app.py`` (ad servers post with a ``decisions`` key);
an advertiser key's reports are always restricted to its own advertiser here.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adtarget.api.deps import ContainerDep, EventStoreDep, PrincipalDep
from adtarget.delivery.reports import default_window, report_columns, rows_to_csv, run_report
from adtarget.delivery.service import ingest_events
from adtarget.errors import InvalidValue, PayloadTooLarge

router = APIRouter(tags=["delivery"])
NDJSON_TYPES = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
)


def parse_body(body: bytes, content_type: str) -> tuple[list[Any], dict[int, str]]:
    """Events from a JSON array or NDJSON; unparsable NDJSON lines are reported by index."""
    if content_type.split(";")[0].strip().lower() in NDJSON_TYPES:
        events: list[Any] = []
        bad: dict[int, str] = {}
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                bad[len(events)] = f"event: not valid JSON ({exc})"
                events.append(None)
        return events, bad
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"body: not valid JSON ({exc})", field="body") from exc
    if not isinstance(parsed, list):
        raise InvalidValue("body: expected a JSON array of events (or NDJSON)", field="body")
    return parsed, {}


@router.post("/v1/events", summary="Record a batch of delivery events")
async def post_events(request: Request, container: ContainerDep) -> dict[str, Any]:
    """Validate, deduplicate and store events; each bad one is listed in ``rejected``."""
    settings = container.settings
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        raise PayloadTooLarge(
            f"request body exceeds the limit of {settings.max_body_bytes} bytes", field="body"
        )
    events, bad = parse_body(body, request.headers.get("content-type", "application/json"))

    def work() -> dict[str, Any]:
        result = ingest_events(
            store=container.event_store, events=events, lookup=container.event_lookup
        )
        for item in result.rejected:
            if item["index"] in bad:
                item["field"], item["reason"] = "event", bad[item["index"]]
        return dict(result.to_dict())

    return await run_in_threadpool(work)


@router.get("/v1/reports", summary="Delivery report over any slice")
def get_reports(
    store: EventStoreDep,
    principal: PrincipalDep,
    from_: Annotated[
        str | None,
        Query(alias="from", description="First day (YYYY-MM-DD) or hour; default 6 days ago"),
    ] = None,
    to: Annotated[
        str | None,
        Query(description="Last day included, or the exclusive end hour; default today (UTC)"),
    ] = None,
    group_by: Annotated[str, Query(description="e.g. campaign,day")] = "day",
    metrics: Annotated[str, Query(description="e.g. impressions,clicks,spend")] = (
        "impressions,clicks,spend"
    ),
    advertiser_id: Annotated[str | None, Query(description="Only this advertiser")] = None,
    format: Annotated[str, Query(description="json or csv")] = "json",
) -> Any:
    """``{"rows": [...]}`` (or CSV with ``format=csv``); advertiser keys see only their data."""
    if format not in ("json", "csv"):
        raise InvalidValue(f"format: must be json or csv, got {format!r}", field="format")
    if principal.role == "advertiser":
        advertiser_id = str(principal.advertiser_id)
    first, last = default_window()
    rows = run_report(
        store=store,
        start=from_ if from_ is not None else first.isoformat(),
        end=to if to is not None else last.isoformat(),
        group_by=group_by,
        metrics=metrics,
        advertiser_id=advertiser_id,
    )
    if format == "csv":
        text = rows_to_csv(rows, report_columns(group_by, metrics))
        return Response(text, media_type="text/csv; charset=utf-8")
    return {"rows": rows}
