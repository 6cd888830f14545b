"""``POST /v1/decisions``: the hot path, a raw ASGI route with orjson and hand-made checks.

Why not a FastAPI route: dependency resolution and pydantic validation cost more than the
decision itself. This route resolves the key through the container's cached resolver, parses
the body with ``api.decision_request.parse_request`` and calls the container's one engine
(``api.decision_service``); errors are rendered by ``api.errors`` like every other route's. A
FastAPI twin of the route, never reached (the raw route matches first), documents the same
contract in ``/openapi.json``.

Deadline: the request's ``X-Request-Deadline-Ms`` (or ``settings.request_deadline_ms``). The
engine runs inline: with in-process stores it is sub-millisecond; with Redis profiles the user's
profile and counters are first read on the event loop (``decision/redis_async.py``, the worker
serving other requests meanwhile), and the rest (the increment script when a capped item
serves) is one round trip bounded by ``store_timeout_ms`` (measured 2026-12-06: the thread hop
cost 60-160 µs of CPU per request, more than the Redis work). With
``ADTARGET_DECIDE_IN_THREAD=true`` and a Redis store it runs in a thread under
``asyncio.wait_for`` and a late answer becomes an empty ``"degraded": true`` one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import orjson
from fastapi import APIRouter, FastAPI
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from adtarget.api import metrics
from adtarget.api.container import container_of
from adtarget.api.decision_request import DecisionRequestBody, DecisionResponseBody, parse_request
from adtarget.api.decision_service import DecisionService, add_tracking
from adtarget.api.errors import send_error, send_json
from adtarget.api.middleware import DEADLINE_SCOPE_KEY, METRICS
from adtarget.decision.models import DecisionRequest, DecisionResult
from adtarget.decision.pods import empty_pod
from adtarget.errors import AdtargetError, Forbidden, PayloadTooLarge, StoreUnavailable

log = logging.getLogger("adtarget.api")

PATH = "/v1/decisions"
DECISION_ROLES = frozenset({"admin", "decisions"})


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
        result: DecisionResult
        reads = service.reads
        if reads is not None:  # the user read on the loop; None: the engine reads it itself
            try:
                user = await reads.read(req.user_id)
            except Exception:  # a fault of the loop's read must not cost the answer
                log.exception("reading the user on the event loop failed; the engine reads it")
                user = None
            if user is not None:
                result = service.engine.decide(req, user=user)
                return result
        result = service.engine.decide(req)
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
    scope["route"] = ROUTE  # the metrics label (FastAPI routes set it themselves)
    authorization: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
            break
    try:
        container = container_of(scope["app"])
        principal = container.key_resolver.resolve(authorization)
        if principal.role not in DECISION_ROLES:
            raise Forbidden(
                f"role {principal.role!r} may not ask for decisions (use a decisions key)",
                field="authorization",
            )
        settings = container.settings
        deadline = scope.get(DEADLINE_SCOPE_KEY)
        if deadline is None:
            deadline = time.monotonic() + settings.request_deadline_ms / 1000.0
        raw = await _read_body(receive, settings.max_body_bytes)
        service = container.decisions
        try:
            known = service.known_formats()
        except AdtargetError:
            raise
        except Exception as exc:  # the catalog unreachable for the format names
            log.exception("decision engine unavailable")
            raise StoreUnavailable(f"decision engine unavailable: {type(exc).__name__}") from exc
        req = parse_request(raw, known)
    except AdtargetError as err:
        await send_error(send, err)
        return
    try:
        result = await _decide(service, req, deadline - time.monotonic())
    except AdtargetError as err:
        if err.http_status < 500:
            await send_error(send, err)
            return
        log.warning("decision degraded: %s", err.message)
        result = _degraded_empty()
    except Exception:  # never a 500 on the decision path: answer empty and degraded
        log.exception("decision engine failed; answered empty and degraded")
        result = _degraded_empty()
    if req.pod is not None and result.pod is None:  # degraded before the engine answered
        result = replace(result, pod=empty_pod(req.pod, "degraded", "the engine did not answer"))
    if container.request_log is not None:
        container.request_log.record(req, result)  # a hash and a queue put (request_log.py)
    METRICS.inc(metrics.DECISIONS)  # buffered: the guard flushes after the answer
    if result.decisions:
        METRICS.inc(metrics.DECISIONS_SERVED, len(result.decisions))
    if result.degraded:
        METRICS.inc(metrics.DEGRADED)
    body = result.to_dict()
    if result.decisions and container.tracking is not None:
        add_tracking(body["decisions"], result.decisions, req, container.tracking)
    await send_json(send, 200, orjson.dumps(body))


class _DecisionsApp:
    """``decisions_asgi`` as an object, so Starlette's ``Route`` treats it as an ASGI app."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await decisions_asgi(scope, receive, send)


ROUTE = Route(PATH, _DecisionsApp(), methods=["POST"])

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
