"""``POST /v1/forecast``: what a proposed (or changed) line item would serve over its flight.

Why a plain route around one service call: the forecast replays sampled requests through the
container's own engine (``decision.forecast_service``), CPU-bound for up to seconds, so it runs
in the thread pool, never on the event loop the decision route shares. With ``"async": true``
the body is validated here and the replay runs as a job (``decision.forecast_jobs``), polled at
``GET /v1/forecast/jobs/{id}``. Advertiser keys forecast only their own campaigns' line items,
name only segments they may see, and see competitors of other advertisers as one anonymous row.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Response
from starlette.concurrency import run_in_threadpool

from adtarget.api.deps import (
    ContainerDep,
    Principal,
    SessionDep,
    ensure_advertiser_scope,
    require_roles,
)
from adtarget.api.scope import hidden_segments
from adtarget.catalog.ownership import campaign_owner
from adtarget.catalog.service import find
from adtarget.decision.forecast import Progress
from adtarget.decision.forecast_jobs import jobs_at
from adtarget.decision.forecast_service import forecast_line_item, forecast_proposal, proposal_of
from adtarget.decision.request_stores import request_store_for
from adtarget.errors import InvalidValue, NotFound

router = APIRouter(prefix="/v1", tags=["forecast"])

Forecasters = Depends(require_roles("reader", "advertiser"))
JOBS_DIR = "forecast-jobs"
"""Where forecast jobs are kept, under the data dir (``decision/forecast_jobs.py``)."""


def _check_scope(body: Any, principal: Principal, session: Any) -> None:
    """An advertiser key's forecast must be about one of its own campaigns.

    Its rule is authorized where it is compiled (``build_proposal``'s ``hidden``), not here.
    """
    if principal.role != "advertiser" or not isinstance(body, dict):
        return
    campaign_id = None
    if isinstance(body.get("line_item_id"), int):
        row: Any = find(session=session, kind="line_item", obj_id=body["line_item_id"])
        campaign_id = row.campaign_id if row is not None else None
    else:
        campaign_id = body.get("campaign_id")
        if not isinstance(campaign_id, int):
            raise InvalidValue(
                "an advertiser key forecasts inside one of its campaigns: campaign_id is required",
                field="campaign_id",
            )
    if campaign_id is not None:
        ensure_advertiser_scope(principal, campaign_owner(session, campaign_id))


def _redact(answer: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """Other advertisers' line items become one row without ids (advertiser keys)."""
    if principal.role != "advertiser":
        return answer
    own, other_lost, other_taken = [], 0, 0
    for row in answer["contended"]:
        if row.get("advertiser_id") == principal.advertiser_id:
            own.append(row)
        else:
            other_lost += row["impressions_lost_to_it"]
            other_taken += row["impressions_taken_from_it"]
    if other_lost or other_taken:
        own.append(
            {
                "line_item_id": None,
                "advertiser_id": None,
                "other_advertisers": True,
                "impressions_lost_to_it": other_lost,
                "impressions_taken_from_it": other_taken,
            }
        )
    answer["contended"] = own
    return answer


def _pop_async(body: Any) -> tuple[Any, bool]:
    """``body`` without its ``"async"`` flag, and the flag (a boolean, else 422)."""
    if not isinstance(body, dict) or "async" not in body:
        return body, False
    flag = body["async"]
    if not isinstance(flag, bool):
        raise InvalidValue("async must be true or false", field="async")
    return {k: v for k, v in body.items() if k != "async"}, flag


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """A job as its owner sees it (who owns it and which process runs it stay inside)."""
    out = {k: v for k, v in job.items() if k not in ("owner", "pid")}
    out["status_url"] = f"/v1/forecast/jobs/{job['id']}"
    return out


@router.post(
    "/forecast",
    summary="Forecast a proposed or changed line item",
    responses={202: {"description": 'with "async": true, the job started (see its status_url)'}},
)
async def post_forecast(
    container: ContainerDep,
    session: SessionDep,
    response: Response,
    body: Any = Body(...),  # noqa: B008  (FastAPI's way to take any JSON body)
    principal: Principal = Forecasters,
) -> dict[str, Any]:
    """A proposed line item (``targeting``, ``start``, ``end``, ``priority``, ``bid_cpm``,
    optional ``frequency_cap``, ``formats``, ``budget``, ``campaign_id``) or ``{"line_item_id":
    ID, "changes": {...}}`` → ``matched_requests``, ``available_impressions``,
    ``forecast_impressions``, ``unique_users``, ``contended``, ``by_day``, ``sample_rate``,
    ``confidence`` (see docs/forecasting.md). ``"no_history": true`` with a ``message`` and null
    numbers when the sampled history has nothing for the rule's users.

    With ``"async": true``: 202 and a job (``id``, ``status``, ``progress``, ``status_url``),
    validated first (a bad field is still a 422 here); ``GET /v1/forecast/jobs/{id}`` polls it.
    """
    body, run_async = _pop_async(body)
    _check_scope(body, principal, session)
    settings = container.settings
    engine = container.decisions.engine
    store = request_store_for(settings)
    hidden = hidden_segments(session, principal)  # checked on the rule the forecast uses
    if not run_async:
        answer = await run_in_threadpool(
            forecast_line_item,
            body,
            session=session,
            engine=engine,
            store=store,
            lookback_days=settings.forecast_lookback_days,
            hidden=hidden,
        )
        return _redact(answer, principal)
    proposal = await run_in_threadpool(proposal_of, body, session=session, hidden=hidden)

    def run(progress: Progress) -> dict[str, Any]:
        answer = forecast_proposal(
            proposal,
            engine=engine,
            store=store,
            lookback_days=settings.forecast_lookback_days,
            progress=progress,
        )
        return _redact(answer, principal)

    job = jobs_at(settings.data_dir / JOBS_DIR).submit(run, owner=principal.actor)
    response.status_code = 202
    response.headers["Location"] = f"/v1/forecast/jobs/{job['id']}"
    return _public(job)


@router.get("/forecast/jobs/{job_id}", summary="A forecast job: status, progress, answer")
async def get_forecast_job(
    job_id: str, container: ContainerDep, principal: Principal = Forecasters
) -> dict[str, Any]:
    """``{"id", "status": "queued"|"running"|"done"|"failed", "progress": {"stage", "done",
    "total", "fraction"}, "result"}`` (``result`` when done: the forecast; ``error`` when
    failed). Only its owner's key (or an admin) reads a job; anyone else gets 404."""
    job = jobs_at(container.settings.data_dir / JOBS_DIR).get(job_id)
    if job is None or not (principal.is_admin or job.get("owner") == principal.actor):
        raise NotFound(f"forecast job {job_id!r} not found", field="job_id")
    return _public(job)
