"""A small typed error hierarchy with stable codes, mapped to HTTP once in ``adtarget.api``.

Every error names what was wrong (``field`` is a JSON field, a file row, a rule token) so the
person reading it can fix the input without reading our source.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AdtargetError(Exception):
    """Base of every error adtarget raises on purpose."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The ``{"code", "message", "field", ...}`` body of an API error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        body.update({k: v for k, v in self.details.items() if v is not None})
        return body


class NotFound(AdtargetError):
    """The named object does not exist (or is not visible to this caller)."""

    code = "not_found"
    http_status = 404


class Conflict(AdtargetError):
    """The change conflicts with the current state (a version moved on, a duplicate name)."""

    code = "conflict"
    http_status = 409


class NothingToUndo(Conflict):
    """Undo was asked for with an empty undo stack."""

    code = "nothing_to_undo"


class NothingToRedo(Conflict):
    """Redo was asked for with an empty redo stack."""

    code = "nothing_to_redo"


class InvalidValue(AdtargetError):
    """A value is out of range, of the wrong type, or not allowed."""

    code = "invalid_value"
    http_status = 422


class InvalidTransition(InvalidValue):
    """A status change that the state machine does not allow."""

    code = "invalid_transition"


class RuleSyntaxError(InvalidValue):
    """A targeting rule could not be parsed; ``line``/``column`` point at the token (1-based)."""

    code = "rule_syntax"

    def __init__(
        self, message: str, *, line: int = 1, column: int = 1, field: str | None = "targeting"
    ) -> None:
        super().__init__(message, field=field, line=line, column=column)
        self.line = line
        self.column = column


class RuleValidationError(RuleSyntaxError):
    """A parsed rule does not fit the dimension registry (unknown dimension, type mismatch...)."""

    code = "rule_invalid"


class Unauthorized(AdtargetError):
    """No or unknown API key."""

    code = "unauthorized"
    http_status = 401


class Forbidden(AdtargetError):
    """The key is valid but its role or advertiser scope does not allow this."""

    code = "forbidden"
    http_status = 403


class PayloadTooLarge(AdtargetError):
    """A request body or upload is larger than the configured limit."""

    code = "payload_too_large"
    http_status = 413


class Overloaded(AdtargetError):
    """The service is shedding load; the client should retry after a short wait."""

    code = "overloaded"
    http_status = 503


class StoreUnavailable(AdtargetError):
    """A backing store (Redis, PostgreSQL) is down or timed out."""

    code = "store_unavailable"
    http_status = 503


class IngestFailed(AdtargetError):
    """An upload job failed (too many bad rows, unreadable file); nothing was published."""

    code = "ingest_failed"
    http_status = 422


class ShardUnavailable(AdtargetError):
    """One shard of a sharded audience could not answer in time; no partial count is given."""

    code = "shard_unavailable"
    http_status = 503
