"""The decision request: checked by hand for the hot path, and described for the OpenAPI document.

Why two descriptions of one body: pydantic validation costs more than the decision itself, so the
raw route checks each field by hand (4xx naming the field for wrong types, unknown formats, bad
limits); the pydantic models only document the same contract in ``/openapi.json``. Both read the
limits below.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import BaseModel, Field

from adtarget.decision.models import DecisionRequest
from adtarget.decision.pods import MAX_POD_SECONDS, MAX_POD_SLOTS, parse_pod
from adtarget.errors import AdtargetError, InvalidValue

MAX_LIMIT = 100
MAX_FORMATS = 32
MAX_CONTEXT_KEYS = 256
MAX_USER_ID = 256
_SCALARS = (str, int, float, bool)


class InvalidJson(AdtargetError):
    """The body is not JSON at all (400, like FastAPI's own ``json_invalid``)."""

    code = "invalid_json"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message, field="body")


def parse_request(raw: bytes, known_formats: frozenset[str] | None) -> DecisionRequest:
    """Check a request body by hand; every error names its field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidValue("the body must be a JSON object", field="body")
    user_id = body.get("user_id")
    if isinstance(user_id, bool) or not isinstance(user_id, str | int):
        raise InvalidValue("user_id is required and must be a string", field="user_id")
    user_id = str(user_id)
    if len(user_id) > MAX_USER_ID:
        raise InvalidValue(f"user_id is longer than {MAX_USER_ID} characters", field="user_id")
    context = body.get("context")
    if context is None:
        context = {}
    elif not isinstance(context, dict):
        raise InvalidValue("context must be an object of dimension -> value", field="context")
    elif len(context) > MAX_CONTEXT_KEYS:
        raise InvalidValue(f"context has more than {MAX_CONTEXT_KEYS} keys", field="context")
    for key, value in context.items():
        if value is None or isinstance(value, _SCALARS):
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            context[key] = frozenset(value)
            continue
        raise InvalidValue(
            f"context.{key} must be a string, number, boolean, null or list of strings",
            field=f"context.{key}",
        )
    limit = body.get("limit", 1)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidValue(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    formats = body.get("formats")
    if formats is not None:
        if not isinstance(formats, list) or len(formats) > MAX_FORMATS:
            raise InvalidValue(
                f"formats must be a list of up to {MAX_FORMATS} format names", field="formats"
            )
        for i, fmt in enumerate(formats):
            if not isinstance(fmt, str):
                raise InvalidValue("a format name must be a string", field=f"formats[{i}]")
            if known_formats is not None and fmt not in known_formats:
                raise InvalidValue(
                    f"unknown ad format {fmt!r}; known: {', '.join(sorted(known_formats))}",
                    field=f"formats[{i}]",
                )
        formats = tuple(formats)
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise InvalidValue("explain must be true or false", field="explain")
    pod = body.get("pod")
    if pod is not None:  # an ad break: its slots take the place of limit
        pod = parse_pod(pod)
        limit = pod.slots
    return DecisionRequest(
        user_id=user_id, context=context, limit=limit, formats=formats, explain=explain, pod=pod
    )


class PodBody(BaseModel):
    """An ad break: up to ``slots`` ads, their creatives' durations summing to at most
    ``max_duration`` seconds and, when given, at least ``min_duration`` (else an empty break)."""

    slots: int = Field(ge=1, le=MAX_POD_SLOTS)
    max_duration: float = Field(gt=0, le=MAX_POD_SECONDS)
    min_duration: float | None = Field(default=None, gt=0, le=MAX_POD_SECONDS)
    playable: bool = Field(
        default=False,
        description="Only creatives with attributes.media_url fill it (what GET /v1/vast asks).",
    )


class UnfilledSlot(BaseModel):
    """A slot of the break left empty, and why."""

    slot: int
    reason: str
    detail: str


class PodOut(BaseModel):
    """How the break was filled."""

    filled: int
    duration: float
    unfilled: list[UnfilledSlot]


class DecisionRequestBody(BaseModel):
    """Body of ``POST /v1/decisions``."""

    # As parse_request accepts them: an integer user_id is read as its decimal text, a null
    # context as no context.
    user_id: Annotated[str, Field(max_length=MAX_USER_ID)] | int
    context: (
        Annotated[
            dict[str, str | int | float | bool | list[str] | None],
            Field(max_length=MAX_CONTEXT_KEYS),
        ]
        | None
    ) = None
    limit: int = Field(default=1, ge=1, le=MAX_LIMIT)
    formats: list[str] | None = Field(default=None, max_length=MAX_FORMATS)
    explain: bool = False
    pod: PodBody | None = None


class DecisionOut(BaseModel):
    """One served line item."""

    line_item_id: int
    campaign_id: int
    creative_id: int
    priority: int
    bid_cpm: float


class DecisionResponseBody(BaseModel):
    """Answer of ``POST /v1/decisions``."""

    decisions: list[DecisionOut]
    snapshot: str | None
    degraded: bool
    pod: PodOut | None = None
    explain: dict[str, Any] | None = None
