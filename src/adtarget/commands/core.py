"""The storage-independent command core: ``Command``, ``CompositeCommand``, ``CommandHistory``.

Why a stack: undo in an editor-like tool means "take back my most recent change". Changes to
the same object depend on each other (a budget edit assumes the campaign exists), so they can
only be reversed newest-first. A LIFO undo stack gives exactly that order, and a second stack
holds what was undone so it can be redone in the mirror order. A new command after an undo
empties the redo stack: the redone change would be applied on top of a state it never saw.

Why each command carries its own inverse: a command is the unit a person thinks in ("pause 40
line items"). While executing, it snapshots exactly what it touches (the rows before and after,
as plain values) and undo writes the "before" back. Undo therefore costs as much as the change,
not as much as the whole catalog, and it can check that nothing else moved in between. In the
product (``rows``, ``row_commands``) every catalog command snapshots each row it touched as
all of its columns before and after (``None`` for "did not exist"), including its ``version``:
undo writes "before" back only if the row is still at the version the command left.

Alternatives rejected:
- Memento of the whole state (copy the catalog before each change): exact but O(catalog) per
  command, and restoring it would silently erase other people's later edits.
- Event sourcing (state = fold of all events; undo = append a compensating event and re-fold):
  a different storage model for the whole product, with replay and snapshotting to build; our
  catalog is plain rows read by many parts of the system.
- Database temporal tables (system-versioned history, ``AS OF`` queries): not portable between
  SQLite and PostgreSQL, and they answer "what was it" rather than "reverse exactly my change
  without touching anyone else's".

Decisions this module makes (and its tests pin down):
- A command that raises in ``execute`` leaves no trace: nothing is pushed, the redo stack is
  kept. It is the command's job to undo its own partial effects (``CompositeCommand`` does).
- Executing a command object that is already in effect (on the undo stack, or a composite that
  has run and not been undone) is refused with ``CommandAlreadyExecuted``: its snapshot belongs
  to one execution, and recording it twice would make the first undo restore the wrong state.
  Wrap the same change in a new command object to apply it again.
- The history is bounded: ``depth`` (default ``Settings.history_depth`` = 200 in the product)
  commands can be undone; the oldest falls off the bottom and can no longer be undone. The redo
  stack never exceeds ``depth`` because it only holds commands taken from the undo stack.
- A failed undo (or redo) leaves the command where it was, so the stacks still describe the
  state: the caller can fix the cause and retry.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from adtarget.errors import Conflict, InvalidValue, NothingToRedo, NothingToUndo


class CommandAlreadyExecuted(Conflict):
    """The same command object was executed while its previous execution is still in effect."""

    code = "command_already_executed"


@runtime_checkable
class Command(Protocol):
    """One undoable change: ``execute`` applies it, ``undo`` reverses exactly that application."""

    @property
    def description(self) -> str:
        """One line for people: ``"pause line item 7"``."""
        ...

    def execute(self) -> None:
        """Apply the change, snapshotting what is needed to undo it; raise to refuse."""
        ...

    def undo(self) -> None:
        """Reverse the last ``execute`` (only called after it succeeded)."""
        ...


class CompositeCommand:
    """Several commands executed and undone as one unit (a bulk edit).

    Parts run in order; if one raises, the parts already done are undone newest-first and the
    original error is re-raised, so a failed composite leaves no trace. Undo reverses the parts
    newest-first; if a part's undo raises, the parts already undone are re-executed so the
    composite stays fully applied, and the error is re-raised. Composites nest.
    """

    def __init__(self, description: str, parts: Iterable[Command]) -> None:
        self._description = description
        self.parts: tuple[Command, ...] = tuple(parts)
        if len({id(p) for p in self.parts}) != len(self.parts):
            raise InvalidValue(
                f"composite {description!r} lists the same command object twice",
                field="parts",
            )
        self._executed = False

    @property
    def description(self) -> str:
        """The one-line description given at construction."""
        return self._description

    @property
    def executed(self) -> bool:
        """True between a successful ``execute`` and the matching ``undo``."""
        return self._executed

    def execute(self) -> None:
        """Run every part in order; on failure undo the done ones and re-raise."""
        if self._executed:
            raise CommandAlreadyExecuted(
                f"composite {self._description!r} is already executed; undo it first"
            )
        done: list[Command] = []
        try:
            for part in self.parts:
                part.execute()
                done.append(part)
        except BaseException as err:
            _rollback(done, forward=False, error=err)
            raise
        self._executed = True

    def undo(self) -> None:
        """Undo every part newest-first; on failure re-apply the undone ones and re-raise."""
        if not self._executed:
            raise NothingToUndo(f"composite {self._description!r} is not executed")
        undone: list[Command] = []
        try:
            for part in reversed(self.parts):
                part.undo()
                undone.append(part)
        except BaseException as err:
            _rollback(undone, forward=True, error=err)
            raise
        self._executed = False


def _rollback(commands: Sequence[Command], *, forward: bool, error: BaseException) -> None:
    """Reverse ``commands`` newest-first: undo them, or (``forward``) execute them again.

    A failure while rolling back is attached as a note to ``error`` (the one being propagated)
    instead of replacing it: the first error is the one the caller must see, and the remaining
    parts are still rolled back.
    """
    for cmd in reversed(commands):
        try:
            if forward:
                cmd.execute()
            else:
                cmd.undo()
        except Exception as exc:
            error.add_note(f"rolling back {cmd.description!r} also failed: {exc!r}")


class CommandHistory:
    """In-memory undo/redo stacks for one actor, bounded to ``depth`` undoable commands."""

    def __init__(self, depth: int = 200) -> None:
        if depth < 1:
            raise InvalidValue(f"history depth must be >= 1, got {depth}", field="depth")
        self.depth = depth
        self._undo: deque[Command] = deque()
        self._redo: list[Command] = []

    def execute(self, command: Command) -> Command:
        """Execute ``command`` and push it; clears the redo stack. Refuses a command in effect."""
        if any(c is command for c in self._undo):
            raise CommandAlreadyExecuted(
                f"command {command.description!r} is already executed and on the undo stack"
            )
        command.execute()  # raises -> nothing below runs: no trace
        self._redo.clear()
        self._push_undo(command)
        return command

    def undo(self) -> Command:
        """Undo the newest command and move it to the redo stack."""
        if not self._undo:
            raise NothingToUndo("nothing to undo")
        command = self._undo[-1]
        command.undo()  # raises -> stays on the undo stack
        self._undo.pop()
        self._redo.append(command)
        return command

    def redo(self) -> Command:
        """Re-execute the most recently undone command and move it back to the undo stack."""
        if not self._redo:
            raise NothingToRedo("nothing to redo")
        command = self._redo[-1]
        command.execute()  # raises -> stays on the redo stack
        self._redo.pop()
        self._push_undo(command)
        return command

    def _push_undo(self, command: Command) -> None:
        self._undo.append(command)
        while len(self._undo) > self.depth:
            self._undo.popleft()

    @property
    def can_undo(self) -> bool:
        """True when ``undo`` would not raise ``NothingToUndo``."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """True when ``redo`` would not raise ``NothingToRedo``."""
        return bool(self._redo)

    def undo_descriptions(self) -> list[str]:
        """Descriptions on the undo stack, newest first."""
        return [c.description for c in reversed(self._undo)]

    def redo_descriptions(self) -> list[str]:
        """Descriptions on the redo stack, next-to-redo first."""
        return [c.description for c in reversed(self._redo)]
