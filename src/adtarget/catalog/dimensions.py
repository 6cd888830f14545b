"""The dimension repository: register the dimensions an upload brings, and take them back.

Registering: an upload that brings a new column registers it as a dimension, so rules may use
it. Taking back (undo of that upload): leaving the dimension behind would leave the catalog in a
state no one made (a dimension rules may name but no snapshot holds). Removing it is only safe
if nothing came to depend on it since: a line item or segment whose rule names it, or an edit of
the dimension itself (its ``version`` moved). Those are kept, and the undo says which and why,
rather than breaking someone else's later work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adtarget.catalog.tables import Dimension, LineItem, Segment
from adtarget.rules.ast import dimensions
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec

__all__ = ["register_dimensions", "remove_unused_dimensions", "rule_catalog_fingerprint"]


def rule_catalog_fingerprint(session: Session) -> tuple[Any, ...]:
    """One row that changes whenever a dimension or a segment is inserted, updated or deleted
    (row counts, newest ``updated_at``, sum of ``version``): what rule validation reads."""
    parts: list[Any] = []
    for table in (Dimension, Segment):
        parts.append(select(func.count()).select_from(table).scalar_subquery())
        parts.append(select(func.max(table.updated_at)).scalar_subquery())
        parts.append(select(func.sum(table.version)).scalar_subquery())
    return tuple(session.execute(select(*parts)).one())


def register_dimensions(session: Session, specs: Sequence[DimensionSpec]) -> list[str]:
    """Insert the dimensions not in the catalog yet (the caller commits); returns their names."""
    created: list[str] = []
    for spec in specs:
        exists = session.scalar(select(Dimension).where(Dimension.name == spec.name))
        if exists is None:
            session.add(
                Dimension(
                    name=spec.name,
                    type=spec.type,
                    description=spec.description,
                    allowed_values=None,
                    status="active",
                )
            )
            created.append(spec.name)
    session.flush()
    return created


def _users_of(session: Session, name: str) -> list[str]:
    """Line items and rule segments whose rule reads dimension ``name`` (prefiltered in SQL)."""
    found: list[str] = []
    pattern = f"%{name}%"
    rows: Iterable[tuple[str, int | str, str | None]] = [
        *(("line item", i, t) for i, t in session.execute(
            select(LineItem.id, LineItem.targeting).where(LineItem.targeting.like(pattern))
        )),
        *(("segment", n, r) for n, r in session.execute(
            select(Segment.name, Segment.rule).where(
                Segment.kind == "rule", Segment.rule.like(pattern)
            )
        )),
    ]  # fmt: skip
    for what, ident, text in rows:
        try:
            if text and name in dimensions(parse(text)):
                found.append(f"{what} {ident}")
        except Exception:  # an unreadable stored rule: assume it may use the dimension
            found.append(f"{what} {ident} (unreadable rule)")
    return found


def remove_unused_dimensions(
    session: Session, names: Iterable[str]
) -> tuple[list[str], dict[str, str]]:
    """Delete the named dimensions still as registered and used by no rule.

    Returns ``(removed, kept)`` where ``kept`` maps a name to the reason it stayed.
    """
    removed: list[str] = []
    kept: dict[str, str] = {}
    for name in sorted(names):
        dim = session.scalar(select(Dimension).where(Dimension.name == name))
        if dim is None:
            continue
        if dim.version != 1:
            kept[name] = f"changed since the upload registered it (version {dim.version})"
            continue
        users = _users_of(session, name)
        if users:
            kept[name] = "used by " + ", ".join(users[:5]) + (" ..." if len(users) > 5 else "")
            continue
        session.delete(dim)
        removed.append(name)
    session.flush()
    return removed, kept
