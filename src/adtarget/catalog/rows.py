"""Rows as plain JSON dicts and back: what the command layer snapshots to make undo exact.

Why a dict of every column (not the pydantic read model): undo must put back exactly what was
there, including columns no API exposes, and the snapshot must survive a JSON round trip through
``command_log.payload``.
"""

from __future__ import annotations

import copy
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, inspect
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from adtarget.catalog.coltypes import UTCDateTime
from adtarget.catalog.tables import MODELS, Base
from adtarget.errors import Conflict, InvalidValue, NotFound


def model_for(kind: str) -> type[Base]:
    """The table class of a catalog kind (``advertiser``, ``line_item``, ...)."""
    try:
        return MODELS[kind]
    except KeyError:
        raise InvalidValue(
            f"unknown kind {kind!r}; one of {', '.join(MODELS)}", field="kind"
        ) from None


def to_row_dict(obj: Base) -> dict[str, Any]:
    """Every column of ``obj`` as a JSON-able value (Decimal → str, datetime → ISO 8601)."""
    out: dict[str, Any] = {}
    for attr in inspect(obj).mapper.column_attrs:
        value = getattr(obj, attr.key)
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, dict | list):
            value = copy.deepcopy(value)
        out[attr.key] = value
    return out


def _from_json(model: type[Base], row: dict[str, Any]) -> dict[str, Any]:
    columns = {a.key: a.columns[0] for a in inspect(model).column_attrs}
    out: dict[str, Any] = {}
    for key, value in row.items():
        col = columns.get(key)
        if col is None:
            raise InvalidValue(f"{model.__tablename__} has no column {key!r}", field=key)
        if value is not None and isinstance(col.type, Numeric):
            value = Decimal(str(value))
        elif value is not None and isinstance(col.type, UTCDateTime):
            value = datetime.fromisoformat(value) if isinstance(value, str) else value
        out[key] = copy.deepcopy(value)
    return out


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


def delete_object(
    *, session: Session, kind: str, obj_id: Any, expected_version: int | None = None
) -> dict[str, Any]:
    """Delete a row (e.g. undo of a create); returns its last state as ``to_row_dict``.

    Rows still referenced (an advertiser with campaigns) are refused with ``Conflict``.
    """
    obj = get_object(session=session, kind=kind, obj_id=obj_id)
    check_version(obj, expected_version, kind=kind)
    row = to_row_dict(obj)
    session.delete(obj)
    flush(session, kind=kind)
    return row


def restore_row(*, session: Session, kind: str, row: dict[str, Any]) -> Base:
    """Put a ``to_row_dict`` snapshot back: re-insert a deleted row or overwrite a live one.

    A live row's ``version`` still moves forward (restoring is a change other readers must
    notice); a re-inserted row keeps the id it had.
    """
    model = model_for(kind)
    values = _from_json(model, row)
    pk = str(inspect(model).primary_key[0].key)
    obj = session.get(model, values[pk])
    if obj is None:
        obj = model(**values)
        session.add(obj)
    else:
        for key, value in values.items():
            if key not in (pk, "version"):
                setattr(obj, key, value)
    flush(session, kind=kind)
    return obj
