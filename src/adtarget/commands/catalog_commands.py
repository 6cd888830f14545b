"""``CatalogWriter``: every catalog mutation as a persisted, undoable command, per actor.

The undo/redo stacks (why a stack: ``docs/undo.md``) live in the ``command_log`` table, not in
memory, so undo works across processes and restarts: an actor's undo stack is their
``state = 'done'`` rows newest first, their redo stack their ``'undone'`` rows oldest first
(undone rows are always newer than done ones, because a new command deletes the actor's undone
rows: "a new command clears redo"). Each actor sees only their own rows, so one person's undo
never reverses another's change; a change by someone else to the same row makes the undo
refuse with ``Conflict`` (see ``rows``).

One command = one database transaction: the catalog rows change and the ``command_log`` row is
written (or flipped to undone/done) together, so a failure anywhere leaves no trace.

Depth: each actor keeps at most ``depth`` undoable commands (``Settings.history_depth``,
200 by default); older ones are deleted when a new command is logged. Commands that changed
nothing (an update to the values already there) are not logged.

Delivery: after an undo/redo the answer says (``note``, ``served``) when a line item the command
governs already served (``delivery_check``, a read of the event store it was handed, after the
catalog transaction); the catalog is restored either way, delivery history is never rewritten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog import changes, command_log
from adtarget.catalog.command_log import CommandLog
from adtarget.commands.delivery_check import SpendTotals, affected_line_items, delivered
from adtarget.commands.persisted import (
    CommandContext,
    PersistedCommand,
    command_from_payload,
    stored_payload,
)
from adtarget.commands.row_commands import (
    Composite,
    CreateObject,
    LinkCreative,
    UpdateObject,
    all_changes,
    check_kind,
    is_noop,
)
from adtarget.commands.rows import set_inflight
from adtarget.errors import Conflict, InvalidValue, NothingToRedo, NothingToUndo
from adtarget.settings import Settings, get_settings

log = logging.getLogger(__name__)

CHANGE_PRUNE_EVERY_S = 300.0
"""Seconds between two prunes of the catalog change log by one process."""
_last_change_prune = float("-inf")

__all__ = ["CatalogWriter", "history_item"]


class HistoryItem(TypedDict):
    """One entry of an actor's command history."""

    id: int
    kind: str
    description: str
    state: str
    created_at: str
    undone_at: str | None
    actor: str


def history_item(entry: CommandLog) -> HistoryItem:
    """The public shape of one history entry (``GET /v1/commands``, ``adtarget history``)."""
    return {
        "id": entry.id,
        "kind": entry.kind,
        "description": entry.description,
        "state": entry.state,
        "created_at": entry.created_at.isoformat(),
        "undone_at": entry.undone_at.isoformat() if entry.undone_at else None,
        "actor": entry.actor,
    }


class CatalogWriter:
    """Executes, undoes and redoes catalog commands for one actor.

    Args:
        session_factory: the catalog's ``sessionmaker`` (``catalog.db.open_catalog``).
        actor: whose history this is (an API key's actor name, ``cli:<user>``).
        depth: how many commands the actor can undo (oldest beyond it are forgotten).
        settings: passed to commands in their ``CommandContext`` (some need paths).
        spend_totals: delivered spend, read after an undo or redo to say which line items
            already served (``delivery.service.spend_totals_reader``); ``None`` skips the check.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        actor: str,
        depth: int = 200,
        settings: Settings | None = None,
        spend_totals: SpendTotals | None = None,
    ) -> None:
        if not actor:
            raise InvalidValue("an actor is required to record commands", field="actor")
        if depth < 1:
            raise InvalidValue(f"history depth must be >= 1, got {depth}", field="depth")
        self.session_factory = session_factory
        self.actor = actor
        self.depth = depth
        self.settings = settings
        self.spend_totals = spend_totals

    # --- convenience commands ------------------------------------------------------------------

    def create(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object of ``kind``; returns it as the API shows it (with ``id``)."""
        return self.execute(CreateObject(obj_kind=kind, data=dict(payload)))

    def update(
        self, kind: str, id: int, changes: Mapping[str, Any], expected_version: int | None = None
    ) -> dict[str, Any]:
        """Change fields of one object (status included); returns the object."""
        return self.execute(
            UpdateObject(
                obj_kind=kind, obj_id=id, patch=dict(changes), expected_version=expected_version
            )
        )

    def attach_creative(self, line_item_id: int, creative_id: int) -> dict[str, Any]:
        """Let a line item show a creative."""
        return self.execute(LinkCreative(line_item_id=line_item_id, creative_id=creative_id))

    def detach_creative(self, line_item_id: int, creative_id: int) -> dict[str, Any]:
        """Stop a line item showing a creative."""
        return self.execute(
            LinkCreative(line_item_id=line_item_id, creative_id=creative_id, detach=True)
        )

    def bulk(
        self, kind: str, ids: Sequence[int], changes: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Apply the same ``changes`` to many objects as one command (undone as one)."""
        check_kind(kind)
        unique = list(dict.fromkeys(ids))
        if not unique:
            raise InvalidValue("bulk needs at least one id", field="ids")
        fields = ", ".join(f"{k}={v!r}" for k, v in sorted(changes.items()))
        parts: list[PersistedCommand] = [
            UpdateObject(obj_kind=kind, obj_id=i, patch=dict(changes)) for i in unique
        ]
        out = self.execute(Composite(f"bulk update {len(unique)} {kind}(s): {fields}", parts))
        results: list[dict[str, Any]] = out["results"]
        return results

    # --- execute / undo / redo -----------------------------------------------------------------

    def _ctx(self, session: Session, log_id: int | None = None) -> CommandContext:
        return CommandContext(
            session=session, settings=self.settings, actor=self.actor, log_id=log_id
        )

    def execute(self, command: PersistedCommand) -> dict[str, Any]:
        """Run ``command`` in one transaction, log it, clear this actor's redo stack."""
        with _transaction(self.session_factory) as session:
            result = command.execute(self._ctx(session))
            if is_noop(command):
                return result
            command_log.clear_redo(session, self.actor)
            command_log.append(
                session,
                actor=self.actor,
                kind=command.kind,
                description=command.description,
                payload=stored_payload(command),
            )
            command_log.prune(session, self.actor, self.depth)
        self._prune_change_log()
        return result

    def _prune_change_log(self) -> None:
        """Delete change-log rows older than ``catalog_changes_keep_seconds``, at most every
        ``CHANGE_PRUNE_EVERY_S`` per process: the log grows with every write and is only read
        from each decision process's recent floor. A failure is logged, never the write's."""
        global _last_change_prune
        now = time.monotonic()
        if now - _last_change_prune < CHANGE_PRUNE_EVERY_S:
            return
        _last_change_prune = now
        keep = (self.settings or get_settings()).catalog_changes_keep_seconds
        try:
            with _transaction(self.session_factory) as session:
                changes.prune_changes(session, before=time.time() - keep)
        except SQLAlchemyError:
            log.warning("pruning the catalog change log failed", exc_info=True)

    def undo(self) -> dict[str, Any]:
        """Undo this actor's newest command; ``NothingToUndo`` / ``Conflict`` otherwise."""
        return self._step("done", "undone")

    def redo(self) -> dict[str, Any]:
        """Redo this actor's most recently undone command; ``NothingToRedo`` / ``Conflict``."""
        return self._step("undone", "done")

    def _step(self, old: str, new: str) -> dict[str, Any]:
        """Pop the top of the ``old`` stack, undo or redo it, push it on the ``new`` one."""
        undoing = old == "done"
        with _transaction(self.session_factory) as session:
            entry = command_log.top(session, self.actor, old)
            if entry is None:
                if undoing:
                    raise NothingToUndo(f"nothing to undo for {self.actor!r}", actor=self.actor)
                raise NothingToRedo(f"nothing to redo for {self.actor!r}", actor=self.actor)
            command = command_from_payload(entry.kind, entry.payload)
            set_inflight(session, all_changes(command))
            ctx = self._ctx(session, entry.id)
            result = command.undo(ctx) if undoing else command.redo(ctx)
            self._flip(session, entry, command, old, new)
            answer = self._answer(entry, result, "undone" if undoing else "redone")
            affected = affected_line_items(session, all_changes(command))
        return self._with_delivery(answer, affected)

    def history(self, limit: int = 50) -> list[HistoryItem]:
        """This actor's commands, newest first (undone ones included, marked by ``state``)."""
        with self.session_factory() as session:
            rows = command_log.history(session, self.actor, max(1, min(limit, 1000)))
            return [history_item(e) for e in rows]

    # --- helpers -------------------------------------------------------------------------------

    def _flip(
        self, session: Session, entry: CommandLog, command: PersistedCommand, old: str, new: str
    ) -> None:
        if not command_log.flip(session, entry, old=old, new=new, payload=stored_payload(command)):
            raise Conflict(
                f"command {entry.id} ({entry.description!r}) was {new} concurrently "
                "by another session of the same actor; nothing was changed",
                field="id",
            )

    def _answer(self, entry: CommandLog, result: dict[str, Any], verb: str) -> dict[str, Any]:
        """``{"command_id", "description", verb: history item, "result", "note"?}``."""
        out: dict[str, Any] = {
            "command_id": entry.id,
            "description": entry.description,
            verb: history_item(entry),
            "result": result,
        }
        if "note" in result:
            out["note"] = result["note"]
        return out

    def _with_delivery(self, answer: dict[str, Any], line_items: list[int]) -> dict[str, Any]:
        """Add ``served`` and a ``note`` when any of ``line_items`` already has delivery.

        Runs after the catalog transaction committed: the undo stands whatever the event store
        says (or fails to say), and the catalog's write lock is not held while reading it.
        """
        if self.spend_totals is None:
            return answer
        seen = delivered(self.spend_totals, line_items)
        if seen is None:
            return answer
        answer["served"] = seen["served"]
        answer["note"] = "; ".join(n for n in (answer.get("note"), seen["note"]) if n)
        return answer


class _transaction:
    """``with`` one session in one transaction; database refusals become ``Conflict``."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.session = factory()

    def __enter__(self) -> Session:
        self.session.begin()
        if self.session.get_bind().dialect.name == "sqlite":
            # Take SQLite's write lock up front: a deferred transaction that read first could
            # not upgrade to write after another writer committed ("database is locked"),
            # while BEGIN IMMEDIATE waits its turn (busy_timeout) and then reads fresh state.
            self.session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        return self.session

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                try:
                    self.session.commit()
                except IntegrityError as err:
                    self.session.rollback()
                    raise Conflict(f"the database refused the change: {err.orig}") from None
            else:
                self.session.rollback()
                if isinstance(exc, IntegrityError):
                    raise Conflict(f"the database refused the change: {exc.orig}") from None
        finally:
            self.session.close()
