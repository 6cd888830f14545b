"""Reading the ``command_log`` for row changes: who moved a row, and did anything since.

Why a module: the undo engine (``rows``) asks the log three questions — which logged commands
touched this row (to name them in a conflict), which expectations to carry along when a
version moves, and whether a newer command touched a row that has no ``version`` column —
and all of them walk the same JSON payloads, at any composite nesting depth.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from adtarget.catalog import command_log
from adtarget.catalog.command_log import CommandLog


def log_entries(session: Session, exclude_id: int | None, state: str) -> list[CommandLog]:
    """Every logged command in ``state`` (all actors), oldest first, minus ``exclude_id``."""
    return command_log.entries(session, state, exclude_id=exclude_id)


def changes_in(payload: Any) -> list[dict[str, Any]]:
    """Every RowChange dict in a log payload, at any nesting depth (composites)."""
    out: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "before" in node and "after" in node and "kind" in node and "key" in node:
                out.append(node)
            else:
                for v in node.values():
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(payload)
    return out


def deep_copy(value: Any) -> Any:
    """A copy of a JSON value (edit a copy of a JSON column, then assign it, to be flushed)."""
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


def _label(entry: CommandLog) -> str:
    return f"{entry.actor}: {entry.description} (command {entry.id})"


def who_changed(
    session: Session, kind: str, key: dict[str, Any], since: int | None, exclude_id: int | None
) -> list[str]:
    """``actor: description`` of done commands that moved the row past version ``since``."""
    who: list[str] = []
    for entry in log_entries(session, exclude_id, "done"):
        for d in changes_in(entry.payload):
            after = d["after"]
            v = int(after["version"]) if isinstance(after, dict) and "version" in after else 0
            if d["kind"] == kind and d["key"] == key and (since is None or v > since):
                who.append(_label(entry))
                break
    return who


def newer_changes(
    session: Session, kind: str, key: dict[str, Any], log_id: int | None
) -> list[str]:
    """Done commands newer than ``log_id`` (any actor) that touched this row.

    For rows without a ``version`` (the line-item/creative link) "it looks as I left it" is
    not proof that nobody touched it: a link detached by me, then attached and detached again
    by someone else, is absent both times, and restoring mine would leave their later detach
    un-undoable. A newer command still in effect on the same row means the row moved on.
    """
    if log_id is None:
        return []
    return [
        _label(entry)
        for entry in command_log.done_after(session, log_id)
        if any(d["kind"] == kind and d["key"] == key for d in changes_in(entry.payload))
    ]
