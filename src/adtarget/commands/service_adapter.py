"""The few calls commands make into ``adtarget.catalog.service``, in one place.

Why a module: commands must change rows exactly as every other caller would (validation, the
status state machine, rule compilation), so they go through the catalog service; keeping the
calls here means a change of that service's signatures is fixed once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from adtarget.catalog import service
from adtarget.catalog.kinds import to_json


def create(session: Session, kind: str, data: Mapping[str, Any]) -> Any:
    """Create one object of ``kind`` (validated by the service); flushed, so it has an id."""
    return service.create(session=session, kind=kind, data=data)


def update(
    session: Session,
    kind: str,
    obj_id: int,
    changes: Mapping[str, Any],
    expected_version: int | None,
) -> Any:
    """Update one object through the service (status transitions checked there)."""
    return service.update(
        session=session,
        kind=kind,
        obj_id=obj_id,
        changes=changes,
        expected_version=expected_version,
    )


def attach_creative(session: Session, line_item_id: int, creative_id: int) -> None:
    """Attach a creative to a line item through the service."""
    service.attach_creative(session=session, line_item_id=line_item_id, creative_id=creative_id)


def detach_creative(session: Session, line_item_id: int, creative_id: int) -> None:
    """Detach a creative from a line item through the service."""
    service.detach_creative(session=session, line_item_id=line_item_id, creative_id=creative_id)


def row_dict(session: Session, obj: Any) -> dict[str, Any]:
    """The object as the API shows it (``catalog.kinds.to_json``), after a flush."""
    session.flush()
    return to_json(obj)
