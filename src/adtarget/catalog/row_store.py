"""The row store of the undo engine: catalog rows as JSON-safe dicts, and written back exactly.

Why Core SQL and every column: a command snapshots each row it touches as all of its columns
(including ones no API shows) so undo can put back exactly what was there, and the snapshot must
survive a JSON round trip through ``command_log.payload``. A write back names the version it
expects in its WHERE clause, so a row someone else changed meanwhile is never overwritten. The
decisions about *whether* to write (conflicts, carried versions) are the command layer's
(``commands/rows.py``); this module only reads and writes rows.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Numeric, Table, and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from adtarget.catalog.coltypes import UTCDateTime, utcnow
from adtarget.catalog.kinds import KINDS, jsonable
from adtarget.catalog.tables import LineItemCreative
from adtarget.errors import Conflict, NotFound

__all__ = [
    "TABLES",
    "dump_table",
    "is_versioned",
    "key_of",
    "key_text",
    "read_row",
    "referrers",
    "row_version",
    "write_row",
]

#: Row kinds a change may name -> their table. ``line_item_creative`` is the attach link.
TABLES: dict[str, Table] = {
    **{name: kind.table.__table__ for name, kind in KINDS.items()},  # type: ignore[misc]
    "line_item_creative": LineItemCreative.__table__,  # type: ignore[dict-item]
}


def is_versioned(kind: str) -> bool:
    """Does the kind's table carry a ``version`` column (the link table does not)?"""
    return "version" in _table(kind).c


def row_version(row: dict[str, Any] | None) -> int | None:
    """The ``version`` of a row dict (``None`` when absent or unversioned)."""
    return None if row is None or "version" not in row else int(row["version"])


def _table(kind: str) -> Table:
    try:
        return TABLES[kind]
    except KeyError:
        raise NotFound(
            f"unknown catalog kind {kind!r}; expected one of {', '.join(sorted(TABLES))}",
            field="kind",
        ) from None


def _decode(col: Column[Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(col.type, UTCDateTime | DateTime) and isinstance(value, str):
        return datetime.fromisoformat(value)
    if isinstance(col.type, Numeric) and isinstance(value, str | int | float):
        return Decimal(str(value))
    return value


def key_of(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """The primary-key part of ``row``."""
    return {c.name: row[c.name] for c in _table(kind).primary_key.columns}


def key_text(kind: str, key: dict[str, Any]) -> str:
    """``line_item 7`` / ``line_item_creative line_item_id=3 creative_id=4``, for messages."""
    if len(key) == 1:
        return f"{kind} {next(iter(key.values()))}"
    return kind + " " + " ".join(f"{k}={v}" for k, v in key.items())


def _where(table: Table, key: dict[str, Any]) -> Any:
    return and_(*(table.c[name] == value for name, value in key.items()))


def read_row(session: Session, kind: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """The row as a JSON-safe dict (all columns), or ``None`` if it does not exist."""
    table = _table(kind)
    session.flush()  # see what the ORM services of this transaction have written
    row = session.execute(select(table).where(_where(table, key))).mappings().one_or_none()
    return None if row is None else {k: jsonable(v) for k, v in row.items()}


def dump_table(session: Session, kind: str) -> list[dict[str, Any]]:
    """Every row of one kind's table, ordered by primary key (tests and diagnostics)."""
    table = _table(kind)
    rows = session.execute(select(table).order_by(*table.primary_key.columns)).mappings()
    return [{k: jsonable(v) for k, v in row.items()} for row in rows]


def write_row(
    session: Session,
    kind: str,
    key: dict[str, Any],
    cur: dict[str, Any] | None,
    target: dict[str, Any] | None,
) -> int | None:
    """Make the row equal ``target`` (content), from ``cur``; return the version written."""
    table = _table(kind)
    versioned = "version" in table.c
    if target is None:
        stmt = delete(table).where(_where(table, key))
        if versioned and cur is not None:
            stmt = stmt.where(table.c.version == cur["version"])
        session.execute(stmt)
        return None
    values = {c.name: _decode(c, target.get(c.name)) for c in table.columns if c.name in target}
    if cur is None:
        if versioned:
            values["version"] = (row_version(target) or 0) + 1
            values["updated_at"] = utcnow()
        session.execute(insert(table).values(**values))
        return row_version(values)
    for name in key:
        values.pop(name, None)
    if not versioned:
        session.execute(update(table).where(_where(table, key)).values(**values))
        return None
    new_version = int(cur["version"]) + 1
    values.update(version=new_version, updated_at=utcnow())
    res = session.execute(
        update(table).where(_where(table, key), table.c.version == cur["version"]).values(**values)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            f"{key_text(kind, key)} changed while being restored; try again", field="version"
        )
    return new_version


def referrers(session: Session, kind: str, key: dict[str, Any]) -> list[str]:
    """Rows in other tables that point at this row (they block deleting it)."""
    table = _table(kind)
    found: list[str] = []
    for ref_table in table.metadata.tables.values():
        ref_kind = next((k for k, t in TABLES.items() if t is ref_table), ref_table.name)
        for fk in ref_table.foreign_keys:
            if fk.column.table is not table or fk.column.name not in key:
                continue
            n = session.execute(
                select(func.count()).select_from(ref_table).where(fk.parent == key[fk.column.name])
            ).scalar_one()
            if n:
                found.append(f"{n} {ref_kind} row(s) via {fk.parent.name}")
    return found
