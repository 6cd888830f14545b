"""Audience sizing, overlap and export, and snapshot listing/rollback over HTTP.

Why the registry is merged here: the catalog owns dimension definitions (what may be written in
a rule), the snapshot knows what was uploaded; a rule is validated against both, then counted on
the snapshot that is current at the moment of the call (named in every answer).
"""

from __future__ import annotations

import email.message
import uuid
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from adtarget.api.container import Container, container_of
from adtarget.api.deps import (
    ContainerDep,
    Principal,
    PrincipalDep,
    SessionDep,
    SettingsDep,
    SnapshotStoreDep,
    app_settings,
    get_principal,
    require_roles,
)
from adtarget.api.errors import send_json
from adtarget.api.scope import hidden_segments, visible_segment_names
from adtarget.audience import service
from adtarget.audience.vocabulary import vocabulary as vocabulary_of
from adtarget.catalog.segments import usable_segment_names
from adtarget.catalog.service import dimension_registry
from adtarget.errors import Forbidden
from adtarget.settings import Settings

router = APIRouter(prefix="/v1", tags=["audiences"])

Readers = Depends(require_roles("reader", "advertiser"))
#: Export hands out user ids: advertisers (their own audiences) and admins, not readers.
Exporters = Depends(require_roles("advertiser"))
AdminOnly = Depends(require_roles())
RuleBody = str | dict[str, Any]


class SizeIn(BaseModel):
    """``{"rule": "..."}``: rule text or its JSON form."""

    rule: RuleBody


class OverlapIn(BaseModel):
    """``{"rules": [...]}``: any number of rules."""

    rules: list[RuleBody] = Field(min_length=1)


class ExportIn(BaseModel):
    """``{"rule": "...", "format": "csv"|"parquet"}``."""

    rule: RuleBody
    format: Literal["csv", "parquet"] = "csv"


class RollbackIn(BaseModel):
    """``{"version": "v000003"}``."""

    version: str


def _context(container: Container, principal: Principal) -> dict[str, Any]:
    """Registry, segments and the segments this caller may not see (``api/scope.py``), from the
    worker's cache (``api/audience_context.py``: re-checked, not reloaded, per call)."""
    return container.audience_context.context(principal)


@router.get(
    "/audiences/vocabulary", dependencies=[Readers], summary="Dimensions, values and segments"
)
def vocabulary(store: SnapshotStoreDep, session: SessionDep, principal: PrincipalDep) -> Any:
    """What a rule may name: for rule completion (dimension values from the current snapshot)."""

    return vocabulary_of(
        snapshot=store.current(),
        registry=dimension_registry(session=session),
        segments=usable_segment_names(
            session,
            scoped=principal.role == "advertiser",
            advertiser_id=principal.advertiser_id,
        ),
    )


SIZE_PATH = "/v1/audiences/size"
SIZE_ROLES = frozenset({"reader", "advertiser", "admin"})


@router.post(
    SIZE_PATH.removeprefix(router.prefix),
    dependencies=[Readers],
    summary="Exact audience size of a rule",
)
async def size(
    body: SizeIn, container: ContainerDep, settings: SettingsDep, principal: PrincipalDep
) -> dict[str, Any]:
    """``{"count": N, "snapshot": v}``; ``count`` is null below the minimum audience size.

    Documentation (and the same contract): ``SIZE_ROUTE``, registered first, answers this path.
    """
    return await run_in_threadpool(_size, container, settings, principal, body.rule)


async def size_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/audiences/size`` as a plain ASGI handler, ahead of the FastAPI route above.

    Why: an audience builder sizes on every keystroke, and FastAPI's route machinery (dependency
    solving, body model, ``jsonable_encoder``, the response model) cost more than sizing a
    one-clause rule. Same checks, same answers: the key (cached on the event loop), the roles of
    ``Readers``, the body as ``SizeIn`` (FastAPI's validation errors, raised for the app's
    handlers), then the catalog check and the sizing in one worker thread, answered with orjson.
    Errors propagate to the app's exception handlers like any route's.
    """
    scope["route"] = SIZE_ROUTE  # the metrics label (FastAPI routes set it themselves)
    request = Request(scope, receive)
    principal = await get_principal(request)  # the dependency itself: one cache, one rule
    if principal.role not in SIZE_ROLES:
        raise Forbidden(
            f"role {principal.role!r} may not call this route "
            f"(allowed: {', '.join(sorted(SIZE_ROLES))})",
            field="authorization",
        )
    container = container_of(request.app)
    settings = app_settings(request.app)
    body = _size_body(await request.body(), request.headers.get("content-type"))
    answer = await run_in_threadpool(_size, container, settings, principal, body.rule)
    await send_json(send, 200, orjson.dumps(answer))


def _size_body(raw: bytes, content_type: str | None) -> SizeIn:
    """The body as FastAPI would validate it: JSON when the content type says so, else the raw
    bytes (then not an object); errors with ``loc`` starting at ``body``."""
    obj: Any = None
    try:
        if raw and _is_json(content_type):
            obj = orjson.loads(raw)
        elif raw:
            obj = raw
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from None
    if obj is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return SizeIn.model_validate(obj)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None


def _is_json(content_type: str | None) -> bool:
    """FastAPI's (strict) rule: ``application/json`` or ``application/*+json`` only."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    sub = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        sub == "json" or sub.endswith("+json")
    )


class _SizeApp:
    """``size_asgi`` as an object, so Starlette's ``Route`` treats it as an ASGI app."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await size_asgi(scope, receive, send)


SIZE_ROUTE = Route(SIZE_PATH, _SizeApp(), methods=["POST"])


def _size(
    container: Container, settings: Settings, principal: Principal, rule: RuleBody
) -> dict[str, Any]:
    return service.size_rule(
        snapshot=service.current_snapshot(container.snapshot_store),
        rule_text=rule,
        min_size=settings.min_audience_size,
        use_cache=settings.sizing_cache,
        **_context(container, principal),
    )


@router.post("/audiences/overlap", dependencies=[Readers], summary="Pairwise overlap of rules")
async def overlap(
    body: OverlapIn, container: ContainerDep, settings: SettingsDep, principal: PrincipalDep
) -> dict[str, Any]:
    """``matrix[i][j]`` = users matching rules i and j (diagonal: each rule's size)."""
    return await run_in_threadpool(_overlap, container, settings, principal, body.rules)


def _overlap(
    container: Container, settings: Settings, principal: Principal, rules: list[RuleBody]
) -> dict[str, Any]:
    return service.overlap_rules(
        snapshot=service.current_snapshot(container.snapshot_store),
        rules=rules,
        min_size=settings.min_audience_size,
        use_cache=settings.sizing_cache,
        **_context(container, principal),
    )


@router.post("/audiences/export", dependencies=[Exporters], summary="User ids matching a rule")
def export(
    body: ExportIn,
    container: ContainerDep,
    store: SnapshotStoreDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> FileResponse:
    """The matching user ids as a CSV or Parquet file (column ``user_id``)."""
    out_dir = settings.data_dir / "exports"
    out = out_dir / f"audience-{uuid.uuid4().hex}.{body.format}"
    result = service.export_rule(
        snapshot=service.current_snapshot(store),
        rule_text=body.rule,
        out_path=out,
        fmt=body.format,
        min_size=settings.min_audience_size,
        **_context(container, principal),
    )
    media = "text/csv" if body.format == "csv" else "application/vnd.apache.parquet"
    return FileResponse(
        out,
        media_type=media,
        filename=f"audience-{result['snapshot']}.{body.format}",
        headers={
            "X-Adtarget-Count": str(result["count"]),
            "X-Adtarget-Snapshot": result["snapshot"],
        },
        background=BackgroundTask(Path(out).unlink, missing_ok=True),
    )


@router.get("/snapshots", dependencies=[Readers], summary="Kept audience snapshots")
def list_snapshots(
    store: SnapshotStoreDep, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """``{"current": v, "snapshots": [{"version", "created_at", "num_users", ...}]}``; an
    advertiser key sees only the segment names it may see."""
    hidden = hidden_segments(session, principal)
    manifests = store.manifests()[::-1]
    if hidden:
        for m in manifests:
            m["segments"] = visible_segment_names(m.get("segments", []), hidden)
    return {"current": store.current_version(), "snapshots": manifests}


@router.post("/snapshots/rollback", dependencies=[AdminOnly], summary="Serve an older snapshot")
def rollback(body: RollbackIn, store: SnapshotStoreDep) -> dict[str, Any]:
    """Point ``CURRENT`` at a kept version; readers everywhere pick it up on their next call."""
    return {"current": store.rollback(body.version)}
