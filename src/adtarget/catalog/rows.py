"""Row helpers shared by the catalog's services: look a row up by kind, check its version, flush.

A database refusal at flush time becomes a typed error here, once, so every service names the
kind and the field the same way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from adtarget.catalog.kinds import kind_named
from adtarget.catalog.tables import Base
from adtarget.errors import Conflict, InvalidValue, NotFound


def model_for(kind: str) -> type[Base]:
    """The table class of a catalog kind (``advertiser``, ``line_item``, ...)."""
    return kind_named(kind).table


def get_object(*, session: Session, kind: str, obj_id: Any) -> Base:
    """The row of ``kind`` with primary key ``obj_id``, or ``NotFound``."""
    obj = session.get(model_for(kind), obj_id)
    if obj is None:
        raise NotFound(f"{kind} {obj_id} does not exist", field="id", kind=kind, id=obj_id)
    return obj


def check_version(obj: Base, expected_version: int | None, *, kind: str) -> None:
    """``Conflict`` naming both versions when someone changed the row since it was read."""
    current = getattr(obj, "version", None)
    if expected_version is not None and current != expected_version:
        raise Conflict(
            f"{kind} {getattr(obj, 'id', '?')} is at version {current}, not the expected "
            f"version {expected_version}; re-read it and retry",
            field="version",
            expected_version=expected_version,
            current_version=current,
        )


def flush(session: Session, *, kind: str) -> None:
    """Flush, turning database refusals into typed errors (the caller then rolls back)."""
    try:
        session.flush()
    except StaleDataError:
        raise Conflict(
            f"{kind} was changed or deleted by someone else meanwhile; re-read it and retry",
            field="version",
        ) from None
    except DataError as exc:
        raise InvalidValue(f"{kind}: value refused by the database ({exc.orig})") from None
    except IntegrityError as exc:
        text = str(exc.orig).lower()
        if "unique" in text or "duplicate key" in text:
            raise Conflict(
                f"{kind}: a row with the same key already exists", field="name"
            ) from None
        if "foreign key" in text:
            raise Conflict(
                f"{kind}: the change would break a reference between rows ({exc.orig})",
                field="id",
            ) from None
        if "check constraint" in text:
            raise InvalidValue(f"{kind}: value refused by the database ({exc.orig})") from None
        raise
