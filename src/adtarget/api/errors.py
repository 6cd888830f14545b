"""The one place errors become HTTP: ``{"error": {"code", "message", "field", ...}}``.

Why one place: every route raises typed ``adtarget.errors`` exceptions and never builds an error
response itself, so clients see one error shape everywhere (API.md) and no bad input can surface
as an HTML 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Send

from adtarget.errors import AdtargetError

log = logging.getLogger("adtarget.api")

_LOC_ROOTS = frozenset({"body", "query", "path", "header", "cookie"})
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_value",
    429: "too_many_requests",
    503: "unavailable",
}


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A JSON error response in the API.md shape."""
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(
        orjson.dumps({"error": body}, default=str),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def json_path(loc: Sequence[str | int]) -> str:
    """``("body", "frequency_cap", "count")`` -> ``frequency_cap.count``; ``[0]`` for indexes."""
    parts = list(loc)
    if parts and parts[0] in _LOC_ROOTS:
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or (str(loc[0]) if loc else "body")


def error_parts(err: AdtargetError) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and extra headers for one of our typed errors (503s say when to retry).

    Both the FastAPI handlers and the raw ASGI paths (the decision route, the guard) render
    through this, so a client cannot tell which path answered.
    """
    headers = {"Retry-After": "1"} if err.http_status == 503 else {}
    return err.http_status, orjson.dumps({"error": err.to_dict()}, default=str), headers


def render_adtarget_error(err: AdtargetError) -> Response:
    """The response for one of our typed errors."""
    status, body, headers = error_parts(err)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def send_json(
    send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> None:
    """Answer a raw ASGI request with a JSON body (the paths that bypass FastAPI)."""
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, err: AdtargetError) -> None:
    """``render_adtarget_error`` for a raw ASGI path."""
    status, body, headers = error_parts(err)
    await send_json(send, status, body, headers)


def _validation_message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    field = json_path(err.get("loc", ()))
    return f"{field}: {msg}" if field else msg


async def _on_adtarget_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdtargetError)
    return render_adtarget_error(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first: dict[str, Any] = (
        dict(errors[0]) if errors else {"msg": "invalid request", "loc": ("body",)}
    )
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return error_response(
            400,
            "invalid_json",
            f"request body is not valid JSON: {ctx.get('error', first.get('msg'))}",
            field="body",
        )
    details = [
        {"field": json_path(e.get("loc", ())), "message": str(e.get("msg"))} for e in errors[:20]
    ]
    return error_response(
        422,
        "invalid_value",
        _validation_message(first),
        field=json_path(first.get("loc", ())),
        errors=details,
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path, sorted.

    Why not Starlette's own ``Allow``: FastAPI makes one route per method, and the router's 405
    names only the first route whose path matched, so ``GET``+``POST`` paths said ``Allow: POST``.
    ``HEAD`` is listed wherever ``GET`` is. Each method is tried through the routes' own
    ``matches`` (included routers too).
    """
    routes = request.app.router.routes
    methods = {
        m
        for m in _METHODS
        if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes)
    }
    if "GET" in methods:
        methods.add("HEAD")  # answered as the GET without a body (``api/head.py``)
    return sorted(methods)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        methods = allowed_methods(request)
        if methods:
            headers["Allow"] = ", ".join(methods)
    return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)


async def _on_integrity_error(_request: Request, exc: Exception) -> Response:
    # A database constraint rejected the input (duplicate name, dangling reference).
    orig = getattr(exc, "orig", None)
    reason = str(orig).splitlines()[0] if orig else "constraint violated"
    return error_response(409, "conflict", f"the catalog rejected the change: {reason}")


async def _on_operational_error(request: Request, exc: Exception) -> Response:
    log.warning("catalog unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503, "store_unavailable", "the catalog is unavailable", headers={"Retry-After": "1"}
    )


async def _on_data_error(_request: Request, exc: Exception) -> Response:
    # A value the database cannot hold (an id beyond the integer range, an overlong string).
    return error_response(422, "invalid_value", f"a value is out of range: {exc}".splitlines()[0])


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", "internal error (logged on the server)")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; ``Exception`` is last-resort logging, never a bare 500 page."""

    app.add_exception_handler(AdtargetError, _on_adtarget_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(IntegrityError, _on_integrity_error)
    app.add_exception_handler(OperationalError, _on_operational_error)
    app.add_exception_handler(DataError, _on_data_error)
    app.add_exception_handler(OverflowError, _on_data_error)
    app.add_exception_handler(Exception, _on_unexpected)
