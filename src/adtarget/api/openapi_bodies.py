"""Request and answer bodies of the routes that parse their own bodies (uploads, events, profile
updates), written as those routes really accept and answer them.

Why by hand: these routes read ``request.body()`` / ``request.form()`` themselves (one bad event
or update must not fail its batch; a file is streamed to disk), so FastAPI sees no body model and
published none: a client generating code from ``/openapi.json`` could not send an upload at all.
Each schema here mirrors the route's own parser (``api/routes/uploads.py``, ``events.py``,
``profiles.py``); ``tests/api/test_openapi_bodies.py`` sends what the schemas allow to the real
routes, and the live schemathesis run checks every answer against them.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from adtarget.audience.sharding import MAX_SHARDS
from adtarget.catalog.models import MAX_INT32
from adtarget.catalog.upload_jobs import UPLOAD_MODES
from adtarget.delivery.models import EVENT_TYPES, MAX_ID_LENGTH
from adtarget.errors import InvalidValue
from adtarget.ingest.updates import MAX_BATCH, MAX_ID_CHARS, MAX_SET_VALUES, MAX_UPDATE_ID_CHARS
from adtarget.rules.registry import DIMENSION_TYPES

INT32 = MAX_INT32
_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}
_WIRE_ID = {"anyOf": [_ID, {"type": "integer", "minimum": 0, "maximum": INT32}]}

#: Upload options shared by the JSON body and the multipart form (``OPTION_FIELDS``).
_OPTIONS: dict[str, Any] = {
    "mode": {"type": "string", "enum": list(UPLOAD_MODES), "default": "replace"},
    "segment": {
        "type": "string",
        "maxLength": 200,
        "description": "The list segment to fill (mode `segment` only)",
    },
    "dry_run": {"type": "boolean", "description": "Validate and report; publish nothing"},
    "id_column": {"type": "string", "maxLength": 200, "default": "user_id"},
    "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": INT32},
    "hashed": {"type": "boolean", "description": "Segment ids are SHA-256 hex of user ids"},
    "append": {"type": "boolean", "description": "Add to the segment's members"},
    "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
    "set_separator": {"type": "string", "minLength": 1, "maxLength": 8, "default": "|"},
    "max_field_chars": {"type": "integer", "minimum": 1, "maximum": INT32, "default": 256},
    "shards": {"type": "integer", "minimum": 1, "maximum": MAX_SHARDS},
    "engine": {"type": "string", "enum": ["local", "ray"], "default": "local"},
}
_SCHEMA_MAP = {
    "type": "object",
    "additionalProperties": {"type": "string", "enum": list(DIMENSION_TYPES)},
    "description": "Types of columns not yet registered: `{dimension: type}`",
}
_FORM_TEXT = {  # a form field is text; flags and numbers are parsed from it
    name: {
        "type": "string",
        "maxLength": 200,
        "description": f"As in the JSON body: {spec['type']}",
    }
    for name, spec in _OPTIONS.items()
}

UPLOAD_JSON: dict[str, Any] = {
    "type": "object",
    "required": ["path"],
    "additionalProperties": False,
    "description": "A server-side path or object-store URI (admin keys only; others send the "
    "file as multipart).",
    "properties": {
        "path": {"type": "string", "minLength": 1, "examples": ["/data/users.parquet"]},
        **_OPTIONS,
        "schema": {"anyOf": [_SCHEMA_MAP, {"type": "string", "description": "It as JSON text"}]},
    },
}
UPLOAD_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "additionalProperties": False,
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "CSV, JSONL or Parquet"},
        **_FORM_TEXT,
        "schema": {"type": "string", "description": "`{dimension: type}` as JSON text"},
    },
}
UPLOAD_JOB: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "mode", "rows_read", "rows_accepted", "rows_rejected"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
        "mode": {"type": "string", "enum": list(UPLOAD_MODES)},
        "segment": {"type": ["string", "null"]},
        "dry_run": {"type": "boolean"},
        "source_path": {"type": ["string", "null"]},
        "file_checksum": {"type": ["string", "null"]},
        "rows_read": {"type": "integer"},
        "rows_accepted": {"type": "integer"},
        "rows_rejected": {"type": "integer"},
        "quarantine": {"type": ["string", "null"]},
        "snapshot": {"type": ["string", "null"]},
        "previous_snapshot": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"]},
        "report": {"type": "object"},
        "actor": {"type": ["string", "null"]},
        "created_at": {"type": ["string", "null"]},
        "started_at": {"type": ["string", "null"]},
        "finished_at": {"type": ["string", "null"]},
        "shards": {"type": "integer"},
        "idempotent": {"type": "boolean", "description": "The same upload already under way"},
    },
}

EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event_id", "type", "ts", "user_id", "line_item_id"],
    "description": "One delivery event; campaign and advertiser ids are filled from the line "
    "item. An event that breaks these rules is listed in `rejected`, the others are stored.",
    "properties": {
        "event_id": _WIRE_ID,
        "type": {"type": "string", "enum": [*EVENT_TYPES, "quartile"]},
        "quartile": {
            "anyOf": [{"type": "string"}, {"type": "integer"}],
            "description": "With `type: quartile`: 1, 2, 3 (or 25, 50, 75)",
        },
        "ts": {"type": "string", "format": "date-time"},
        "user_id": _WIRE_ID,
        "line_item_id": _WIRE_ID,
        "campaign_id": _WIRE_ID,
        "advertiser_id": _WIRE_ID,
        "creative_id": _WIRE_ID,
        "country": {"type": "string", "maxLength": MAX_ID_LENGTH},
        "device": {"type": "string", "maxLength": MAX_ID_LENGTH},
        "dims": {"type": "object"},
        "cost": {
            "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}],
            "description": "Money, up to 6 decimals, at most 1e9",
        },
    },
}
EVENTS_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["accepted", "duplicates", "rejected"],
    "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "duplicates": {"type": "integer", "minimum": 0},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "reason"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "field": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}

UPDATE: dict[str, Any] = {
    "type": "object",
    "required": ["update_id", "user_id"],
    "additionalProperties": False,
    "description": "Set and/or unset dimensions of one user, or delete the user. An update "
    "breaking these rules is listed in `rejected`; the others apply.",
    "properties": {
        "update_id": {"type": "string", "minLength": 1, "maxLength": MAX_UPDATE_ID_CHARS},
        "user_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
        "set": {
            "type": "object",
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
                    {"type": "number"},
                    {"type": "boolean"},
                    {"type": "array", "items": {"type": "string"}, "maxItems": MAX_SET_VALUES},
                    {"type": "null"},
                ]
            },
        },
        "unset": {"type": "array", "items": {"type": "string"}},
        "delete": {"type": "boolean"},
    },
}
UPDATES_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["updates"],
    "properties": {"updates": {"type": "array", "items": UPDATE, "maxItems": MAX_BATCH}},
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"schema": schema}


#: ``(path, method)`` -> the ``requestBody`` to publish.
REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/uploads", "post"): {
        "required": True,
        "content": {
            "multipart/form-data": _json(UPLOAD_FORM),
            "application/json": _json(UPLOAD_JSON),
        },
    },
    ("/v1/events", "post"): {
        "required": True,
        "description": "A JSON array of events, or NDJSON (one event per line) with an NDJSON "
        "content type (`application/x-ndjson`, `application/jsonl`, ...).",
        "content": {
            "application/json": _json({"type": "array", "items": EVENT}),
            "application/x-ndjson": _json({"type": "string", "description": "One event a line"}),
        },
    },
    ("/v1/profiles/updates", "post"): {
        "required": True,
        "content": {"application/json": _json(UPDATES_BODY)},
    },
}
#: ``(path, method)`` -> (success status, its body schema, the error statuses it can answer).
ANSWERS: dict[tuple[str, str], tuple[str, dict[str, Any], tuple[str, ...]]] = {
    ("/v1/uploads", "post"): ("202", UPLOAD_JOB, ("400", "401", "403", "413", "422", "503")),
    ("/v1/events", "post"): ("200", EVENTS_ANSWER, ("400", "401", "403", "413", "422", "503")),
    ("/v1/profiles/updates", "post"): (
        "200",
        EVENTS_ANSWER,
        ("400", "401", "403", "409", "413", "422", "503"),
    ),
    ("/v1/uploads/{job_id}", "get"): ("200", UPLOAD_JOB, ("400", "401", "403", "404", "503")),
}


_OPTIONS_CHECK = jsonschema.Draft202012Validator(
    {"type": "object", "properties": {**_OPTIONS, "schema": _SCHEMA_MAP}}
)


def check_upload_options(options: dict[str, Any], *, form: bool) -> None:
    """Refuse upload options the published schema refuses (after a form's text was converted),
    naming the field: a 1e30 TTL, a two-character delimiter or a list as ``schema`` were
    accepted (and the list was a 500)."""
    error = jsonschema.exceptions.best_match(_OPTIONS_CHECK.iter_errors(options))
    if error is None:
        return
    name = str(error.absolute_path[0]) if error.absolute_path else "body"
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    raise InvalidValue(f"{name}: {message}", field=name)
