"""``POST /v1/decisions``: the hot path, a raw Starlette route with orjson and manual checks.

Why not a FastAPI route: dependency resolution and pydantic validation cost more than the
decision itself. This route parses with orjson, checks each field by hand (4xx naming the field
for wrong types, unknown formats, bad limits), resolves the key through the cached resolver,
and calls the app's one ``DecisionEngine``. A FastAPI twin of the route, never reached (the raw
route is registered first and matches first), documents the same contract in ``/openapi.json``.

Deadline: the request's ``X-Request-Deadline-Ms`` (or ``settings.request_deadline_ms``). With
in-process stores the engine runs inline (sub-millisecond, a thread hop would cost more than it
does); with Redis profiles or counters it runs in a thread under ``asyncio.wait_for`` and a late
answer becomes an empty ``"degraded": true`` one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from adtarget.api import metrics
from adtarget.api.deps import app_key_resolver, app_session_factory, app_settings
from adtarget.api.middleware import DEADLINE_SCOPE_KEY, METRICS
from adtarget.decision.models import DecisionRequest, DecisionResult
from adtarget.errors import (
    AdtargetError,
    Forbidden,
    InvalidValue,
    PayloadTooLarge,
    StoreUnavailable,
)
from adtarget.settings import Settings

log = logging.getLogger("adtarget.api")

PATH = "/v1/decisions"
MAX_LIMIT = 100
MAX_FORMATS = 32
MAX_CONTEXT_KEYS = 256
DECISION_ROLES = frozenset({"admin", "decisions"})
FORMATS_TTL_S = 5.0
_SCALARS = (str, int, float, bool)
_build_lock = threading.Lock()


class DecisionService:
    """The app's engine plus what the route needs around it (known formats, how to run)."""

    def __init__(
        self,
        engine: Any,
        *,
        inline: bool = True,
        format_names: Callable[[], frozenset[str]] | None = None,
    ) -> None:
        self.engine = engine
        self.inline = inline
        self._format_names = format_names
        self._formats: frozenset[str] | None = None
        self._formats_at = 0.0

    def known_formats(self) -> frozenset[str] | None:
        """Ad format names of the catalog (refreshed every few seconds); None = don't check."""
        if self._format_names is None:
            return None
        now = time.monotonic()
        if self._formats is None or now - self._formats_at > FORMATS_TTL_S:
            self._formats = self._format_names()
            self._formats_at = now
        return self._formats

    def status(self) -> dict[str, Any]:
        """Readiness of the engine (its own ``status()`` when it has one)."""
        holder = getattr(self.engine, "index_holder", None)
        generation = getattr(holder, "generation", None)
        if generation is not None and generation < 1:
            return {"ok": False, "error": "decision index not built yet"}
        index = holder.current() if holder is not None else None
        return {
            "ok": True,
            "line_items": len(index) if index is not None else None,
            "generation": generation,
        }

    def close(self) -> None:
        """Stop the index refresh thread and release the engine's stores."""
        for owner, name in (
            (getattr(self.engine, "index_holder", None), "stop"),
            (getattr(self.engine, "profiles", None), "close"),
            (getattr(self.engine, "counters", None), "close"),
            (self.engine, "close"),
        ):
            method = getattr(owner, name, None)
            if callable(method):
                method()


def _catalog_formats(app: FastAPI) -> Callable[[], frozenset[str]]:
    def names() -> frozenset[str]:
        from sqlalchemy import select

        from adtarget.catalog.tables import AdFormat

        with app_session_factory(app)() as session:
            return frozenset(session.scalars(select(AdFormat.name)))

    return names


def build_engine(app: FastAPI) -> Any:
    """The engine per settings (``DecisionEngine.from_settings``), sharing this app's catalog
    sessions, snapshot store and delivery event store: profiles (snapshot | redis), counters
    (memory | sqlite | redis), an index holder polling the catalog for changes.
    """
    from adtarget.api.deps import app_snapshot_store
    from adtarget.api.routes.events import app_event_store
    from adtarget.decision.engine import DecisionEngine
    from adtarget.delivery.service import DeliverySpend

    return DecisionEngine.from_settings(
        app_settings(app),
        session_factory=app_session_factory(app),
        snapshot_store=app_snapshot_store(app),
        spend=DeliverySpend(app_event_store(app)),
        on_index_rebuild=metrics.record_index_rebuild,
    )


def build_decision_service(app: FastAPI) -> DecisionService:
    """The engine (see ``build_engine``) and how to run it for this app's settings."""
    settings = app_settings(app)
    inline = settings.profile_store != "redis" and settings.counter_store != "redis"
    return DecisionService(build_engine(app), inline=inline, format_names=_catalog_formats(app))


def ensure_decision_service(app: FastAPI) -> DecisionService:
    """The app's decision service, built once (tests may set ``app.state.decision_service``)."""
    service: DecisionService | None = getattr(app.state, "decision_service", None)
    if service is None:
        with _build_lock:
            service = getattr(app.state, "decision_service", None)
            if service is None:
                service = build_decision_service(app)
                app.state.decision_service = service
    return service


def parse_request(raw: bytes, known_formats: frozenset[str] | None) -> DecisionRequest:
    """Check a request body by hand; every error names its field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _InvalidJson(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidValue("the body must be a JSON object", field="body")
    user_id = body.get("user_id")
    if isinstance(user_id, bool) or not isinstance(user_id, str | int):
        raise InvalidValue("user_id is required and must be a string", field="user_id")
    user_id = str(user_id)
    if len(user_id) > 256:
        raise InvalidValue("user_id is longer than 256 characters", field="user_id")
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
    return DecisionRequest(
        user_id=user_id, context=context, limit=limit, formats=formats, explain=explain
    )


class _InvalidJson(AdtargetError):
    code = "invalid_json"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message, field="body")


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, err: AdtargetError) -> None:
    body = orjson.dumps({"error": err.to_dict()}, default=str)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if err.http_status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": err.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes", field="body")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _degraded_empty(snapshot: str | None = None) -> DecisionResult:
    return DecisionResult(decisions=[], snapshot=snapshot, degraded=True)


async def _decide(service: DecisionService, req: DecisionRequest, timeout: float) -> DecisionResult:
    if service.inline:
        result: DecisionResult = service.engine.decide(req)
        return result
    try:
        # An executor future, not anyio's to_thread: cancelling it must not wait for the thread.
        future = asyncio.get_running_loop().run_in_executor(None, service.engine.decide, req)
        return await asyncio.wait_for(future, max(timeout, 0.0))
    except TimeoutError:
        metrics.DEADLINE_EXCEEDED.inc()
        return _degraded_empty()


async def decisions_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ad request (see the module docstring); a plain ASGI callable."""
    app = scope["app"]
    scope["route"] = ROUTE  # the metrics label (FastAPI routes set it themselves)
    authorization: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
            break
    state = app.state
    try:
        # the resolver built by ``app_key_resolver`` (read straight from the state: that
        # helper's function-level import costs a visible share of this path)
        resolver = getattr(state, "key_resolver", None) or app_key_resolver(app)
        principal = resolver.resolve(authorization)
        if principal.role not in DECISION_ROLES:
            raise Forbidden(
                f"role {principal.role!r} may not ask for decisions (use a decisions key)",
                field="authorization",
            )
        settings: Settings = state.settings
        deadline = scope.get(DEADLINE_SCOPE_KEY)
        if deadline is None:
            deadline = time.monotonic() + settings.request_deadline_ms / 1000.0
        raw = await _read_body(receive, settings.max_body_bytes)
        try:
            service = ensure_decision_service(app)
            known = service.known_formats()
        except AdtargetError:
            raise
        except Exception as exc:  # catalog or a store unreachable at first use
            log.exception("decision engine unavailable")
            raise StoreUnavailable(f"decision engine unavailable: {type(exc).__name__}") from exc
        req = parse_request(raw, known)
    except AdtargetError as err:
        await _send_error(send, err)
        return
    try:
        result = await _decide(service, req, deadline - time.monotonic())
    except AdtargetError as err:
        if err.http_status < 500:
            await _send_error(send, err)
            return
        log.warning("decision degraded: %s", err.message)
        result = _degraded_empty()
    except Exception:  # never a 500 on the decision path: answer empty and degraded
        log.exception("decision engine failed; answered empty and degraded")
        result = _degraded_empty()
    METRICS.inc(metrics.DECISIONS)  # buffered: the guard flushes after the answer
    if result.decisions:
        METRICS.inc(metrics.DECISIONS_SERVED, len(result.decisions))
    if result.degraded:
        METRICS.inc(metrics.DEGRADED)
    await _send_json(send, 200, orjson.dumps(result.to_dict()))


class _DecisionsApp:
    """``decisions_asgi`` as an object, so Starlette's ``Route`` treats it as an ASGI app."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await decisions_asgi(scope, receive, send)


ROUTE = Route(PATH, _DecisionsApp(), methods=["POST"])


# --- documentation twin (never reached: the raw route above matches first) ---------------------


class DecisionRequestBody(BaseModel):
    """Body of ``POST /v1/decisions``."""

    user_id: str = Field(max_length=256)
    context: dict[str, str | int | float | bool | list[str] | None] = Field(default_factory=dict)
    limit: int = Field(default=1, ge=1, le=MAX_LIMIT)
    formats: list[str] | None = Field(default=None, max_length=MAX_FORMATS)
    explain: bool = False


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
    explain: dict[str, Any] | None = None


doc_router = APIRouter(tags=["decisions"])


@doc_router.post(PATH, response_model=DecisionResponseBody, summary="Decide which ads to serve")
async def decisions_doc(body: DecisionRequestBody) -> DecisionResponseBody:
    """Ranked by priority (1 first), bid CPM (high first), line item id. Needs a decisions key.

    Documentation only: ``ROUTE`` (registered first) answers every request to this path.
    """
    raise RuntimeError("unreachable: the raw decisions route answers this path")


def mount(app: FastAPI) -> None:
    """Register the raw route first, then its documented twin."""
    app.router.routes.append(ROUTE)
    app.include_router(doc_router)
