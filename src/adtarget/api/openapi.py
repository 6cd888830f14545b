"""The published OpenAPI contract: the bearer scheme and the error body as really sent.

Why a post-processing step: FastAPI documents only what a route declares, so every route showed
a ``HTTPValidationError`` body that is never sent, no 401/403/404, and no way to authorize in
Swagger. The schema is built once by FastAPI, then this adds ``bearer`` (so Swagger's Authorize
button works), the ``Error`` body of ``api/errors.py`` and the statuses every route can answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from adtarget.api.openapi_bodies import ANSWERS, REQUEST_BODIES

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string", "examples": ["invalid_value"]},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
            "additionalProperties": True,
        }
    },
}
#: Statuses any route may answer (auth, guard, validation), with why.
COMMON: dict[str, str] = {
    "400": "Malformed request (bad JSON, bad header)",
    "401": "Missing, unknown or revoked API key",
    "403": "The key's role or advertiser may not do this",
    "413": "Request body over the limit",
    "422": "A value is invalid (the field is named)",
    "503": "Overloaded, past its deadline, or a store is unavailable (Retry-After)",
}
OBJECT_STATUSES = {"404": "No such object (or not visible to this key)", "409": "Conflict"}
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics"})


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with the post-processed contract (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key: `Authorization: Bearer KEY` (adtarget keys create)",
            }
        }
        schema["security"] = [{"bearer": []}]
        ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for path, item in schema.get("paths", {}).items():
            for method, op in item.items():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                responses = op["responses"]
                if path in PUBLIC:
                    op["security"] = []
                    statuses = {"503": COMMON["503"]} if path == "/readyz" else {}
                else:
                    statuses = dict(COMMON)
                    if method in ("get", "patch", "delete", "post"):
                        statuses.update(OBJECT_STATUSES)
                key = (path, method)
                if key in REQUEST_BODIES:
                    op["requestBody"] = REQUEST_BODIES[key]
                if key in ANSWERS:  # a hand-parsed route: its exact statuses and answer
                    ok, body, errors = ANSWERS[key]
                    statuses = {s: {**COMMON, **OBJECT_STATUSES}[s] for s in errors}
                    op["responses"] = {
                        ok: {
                            "description": "Successful Response",
                            "content": {"application/json": {"schema": body}},
                        }
                    }
                    responses = op["responses"]
                for status, why in statuses.items():
                    responses[status] = {"description": why, **ref}
        schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
        schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
