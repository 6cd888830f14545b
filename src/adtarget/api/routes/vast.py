"""``GET /v1/vast``: an ad break as a VAST 4 document (``api/vast.py``), for players and SSAI.

The query is the decision request: ``user_id``, ``slots``, ``max_duration`` (seconds; also
``min_duration`` and ``formats`` comma-separated); every other parameter is a context dimension
(a value that reads as a finite number is passed as one, so ``age=34`` compares as a number).
The pod's own parameters are bounded in the query declaration too (the published ranges; an
unbounded ``slots`` of 10**21 could not be re-encoded for the parser and was a 500, and a NaN
``min_duration`` was silently dropped).
It is checked by the same parser as ``POST /v1/decisions`` and decided by the same engine, so
the XML and the JSON answer are one break; every URL in it is a signed tracking URL. The break
is asked ``playable``: only creatives with a media URL fill it, so every filled slot is an
``<Ad>`` (a creative without one would have taken a slot the XML must leave out).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adtarget.api.decision_request import parse_request
from adtarget.api.decision_service import add_tracking
from adtarget.api.deps import ContainerDep, require_roles
from adtarget.api.vast import vast_document
from adtarget.decision.pods import MAX_POD_SECONDS, MAX_POD_SLOTS

router = APIRouter(tags=["decisions"])
RESERVED = frozenset({"user_id", "slots", "max_duration", "min_duration", "formats"})


def _value(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return int(number) if number.is_integer() and "." not in text else number


@router.get(
    "/v1/vast",
    dependencies=[Depends(require_roles("decisions"))],
    summary="An ad break as a VAST 4 document",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}}},
)
async def vast(
    request: Request,
    container: ContainerDep,
    user_id: Annotated[str, Query(min_length=1)],
    max_duration: Annotated[float, Query(gt=0, le=MAX_POD_SECONDS, allow_inf_nan=False)],
    slots: Annotated[int, Query(ge=1, le=MAX_POD_SLOTS)] = 1,
    min_duration: Annotated[
        float | None, Query(gt=0, le=MAX_POD_SECONDS, allow_inf_nan=False)
    ] = None,
    formats: Annotated[str | None, Query()] = None,
) -> Response:
    """The break ``POST /v1/decisions`` would answer for the same user, context and pod."""
    pod: dict[str, Any] = {"slots": slots, "max_duration": max_duration, "playable": True}
    if min_duration is not None:
        pod["min_duration"] = min_duration
    body: dict[str, Any] = {
        "user_id": user_id,
        "context": {k: _value(v) for k, v in request.query_params.items() if k not in RESERVED},
        "pod": pod,
    }
    if formats:
        body["formats"] = [f.strip() for f in formats.split(",") if f.strip()]
    service = container.decisions
    req = parse_request(orjson.dumps(body), service.known_formats())
    result = await run_in_threadpool(service.engine.decide, req)
    ads = result.to_dict()["decisions"]
    if ads and container.tracking is not None:
        add_tracking(ads, result.decisions, req, container.tracking)
    return Response(vast_document(ads), media_type="application/xml")
