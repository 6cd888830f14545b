"""``POST /v1/forecast``: what a proposed (or changed) line item would serve over its flight.

Why a plain route around one service call: the forecast replays sampled requests through the
container's own engine (``decision.forecast_service``), CPU-bound for up to seconds, so it runs
in the thread pool, never on the event loop the decision route shares. Advertiser keys forecast
only their own campaigns' line items, name only segments they may see, and see competitors of
other advertisers as one anonymous row.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends
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
from adtarget.decision.forecast_service import forecast_line_item
from adtarget.decision.request_stores import request_store_for
from adtarget.errors import InvalidValue

router = APIRouter(prefix="/v1", tags=["forecast"])

Forecasters = Depends(require_roles("reader", "advertiser"))


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


@router.post("/forecast", summary="Forecast a proposed or changed line item")
async def post_forecast(
    container: ContainerDep,
    session: SessionDep,
    body: Any = Body(...),  # noqa: B008  (FastAPI's way to take any JSON body)
    principal: Principal = Forecasters,
) -> dict[str, Any]:
    """A proposed line item (``targeting``, ``start``, ``end``, ``priority``, ``bid_cpm``,
    optional ``frequency_cap``, ``formats``, ``budget``, ``campaign_id``) or ``{"line_item_id":
    ID, "changes": {...}}`` → ``matched_requests``, ``available_impressions``,
    ``forecast_impressions``, ``unique_users``, ``contended``, ``by_day``, ``sample_rate``,
    ``confidence`` (see docs/forecasting.md). ``"no_history": true`` with a ``message`` and null
    numbers when the sampled history has nothing for the rule's users.
    """
    _check_scope(body, principal, session)
    settings = container.settings
    answer = await run_in_threadpool(
        forecast_line_item,
        body,
        session=session,
        engine=container.decisions.engine,
        store=request_store_for(settings),
        lookback_days=settings.forecast_lookback_days,
        hidden=hidden_segments(session, principal),  # checked on the rule the forecast uses
    )
    return _redact(answer, principal)
