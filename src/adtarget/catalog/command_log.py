"""The command-log repository: the ``command_log`` table that holds every actor's undo history.

An actor's undo stack is their ``done`` rows newest first, their redo stack their ``undone``
rows oldest first (``commands/catalog_commands.py`` says why). The command layer decides what
to push, pop and flip; this module is the only one that reads or writes the table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from adtarget.catalog.coltypes import utcnow
from adtarget.catalog.tables import CommandLog

__all__ = [
    "CommandLog",
    "append",
    "clear_redo",
    "done_after",
    "entries",
    "flip",
    "history",
    "prune",
    "top",
]


def append(
    session: Session, *, actor: str, kind: str, description: str, payload: dict[str, Any]
) -> CommandLog:
    """Push a command on ``actor``'s undo stack (state ``done``)."""
    entry = CommandLog(
        actor=actor, kind=kind, description=description, payload=payload, state="done"
    )
    session.add(entry)
    session.flush()
    return entry


def clear_redo(session: Session, actor: str) -> None:
    """Forget ``actor``'s undone commands (a new command clears redo)."""
    session.execute(
        delete(CommandLog).where(CommandLog.actor == actor, CommandLog.state == "undone")
    )


def top(session: Session, actor: str, state: str) -> CommandLog | None:
    """The next command to undo (``done``: newest) or redo (``undone``: oldest), locked."""
    order = CommandLog.id.desc() if state == "done" else CommandLog.id.asc()
    stmt = (
        select(CommandLog)
        .where(CommandLog.actor == actor, CommandLog.state == state)
        .order_by(order)
        .limit(1)
        .with_for_update()
    )
    return session.scalars(stmt).first()


def flip(
    session: Session, entry: CommandLog, *, old: str, new: str, payload: dict[str, Any]
) -> bool:
    """Move ``entry`` from state ``old`` to ``new`` with its new payload; ``False`` if another
    session flipped it first (nothing is changed then)."""
    res = session.execute(
        update(CommandLog)
        .where(CommandLog.id == entry.id, CommandLog.state == old)
        .values(state=new, payload=payload, undone_at=utcnow() if new == "undone" else None)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.refresh(entry)
    return True


def prune(session: Session, actor: str, depth: int) -> None:
    """Keep only ``actor``'s newest ``depth`` done commands (older ones can no longer be undone)."""
    count = session.scalar(
        select(func.count())
        .select_from(CommandLog)
        .where(CommandLog.actor == actor, CommandLog.state == "done")
    )
    if (count or 0) <= depth:
        return
    keep = (
        select(CommandLog.id)
        .where(CommandLog.actor == actor, CommandLog.state == "done")
        .order_by(CommandLog.id.desc())
        .limit(depth)
    )
    ids = list(session.scalars(keep))
    session.execute(
        delete(CommandLog).where(
            CommandLog.actor == actor, CommandLog.state == "done", CommandLog.id.not_in(ids)
        )
    )


def history(session: Session, actor: str, limit: int) -> list[CommandLog]:
    """``actor``'s commands newest first, undone ones included."""
    stmt = (
        select(CommandLog)
        .where(CommandLog.actor == actor)
        .order_by(CommandLog.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def entries(session: Session, state: str, *, exclude_id: int | None = None) -> list[CommandLog]:
    """Every command in ``state`` (all actors), oldest first, minus ``exclude_id``."""
    stmt = select(CommandLog).where(CommandLog.state == state).order_by(CommandLog.id)
    if exclude_id is not None:
        stmt = stmt.where(CommandLog.id != exclude_id)
    return list(session.scalars(stmt))


def done_after(session: Session, log_id: int) -> list[CommandLog]:
    """Commands still in effect (``done``, any actor) newer than ``log_id``, oldest first."""
    stmt = (
        select(CommandLog)
        .where(CommandLog.state == "done", CommandLog.id > log_id)
        .order_by(CommandLog.id)
    )
    return list(session.scalars(stmt))
