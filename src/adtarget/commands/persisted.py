"""The extension point for commands whose history lives in the catalog's ``command_log`` table.

Why persisted: undo works across processes and restarts, so a command acts on storage handed to
it (``CommandContext``), not objects it holds, and is written out (``to_payload``) and rebuilt
(``from_payload``) by the ``kind`` it registered under (``@register_command``). The contract
for implementers (execute / undo / redo, refusals, one transaction) and an example are in
docs/undo.md, "Writing a new command".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

from adtarget.errors import Conflict, InvalidValue, NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from adtarget.settings import Settings


class CommandAlreadyExecuted(Conflict):
    """The same command object was executed while its previous execution is still in effect."""

    code = "command_already_executed"


@dataclass(frozen=True)
class CommandContext:
    """What a persisted command may touch: the open transaction, settings, who is acting."""

    session: Session
    settings: Settings | None
    actor: str
    #: The ``command_log`` row being undone/redone (``None`` while executing a new command).
    log_id: int | None = None


@runtime_checkable
class PersistedCommand(Protocol):
    """A command stored in ``command_log`` and rebuilt from its payload to undo/redo."""

    kind: ClassVar[str]

    @property
    def description(self) -> str:
        """One line for people, shown by ``adtarget history`` and ``GET /v1/commands``."""
        ...

    def execute(self, ctx: CommandContext) -> dict[str, Any]:
        """Apply the change; return what the caller sees."""
        ...

    def undo(self, ctx: CommandContext) -> dict[str, Any]:
        """Reverse the change or raise ``Conflict``; return what was undone."""
        ...

    def redo(self, ctx: CommandContext) -> dict[str, Any]:
        """Re-apply after an undo or raise ``Conflict``; return what was redone."""
        ...

    def to_payload(self) -> dict[str, Any]:
        """A JSON-serialisable dict from which ``from_payload`` rebuilds this command."""
        ...

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        """Rebuild the command stored by ``to_payload``."""
        ...


class PersistedCommandBase:
    """Optional base class: supplies ``redo`` = ``execute``."""

    def redo(self, ctx: CommandContext) -> dict[str, Any]:
        """Re-apply by executing again (override when redo must check for conflicts)."""
        return self.execute(ctx)  # type: ignore[attr-defined,no-any-return]


_REGISTRY: dict[str, type[Any]] = {}

C = TypeVar("C", bound=type[Any])


def register_command(cls: C) -> C:
    """Class decorator: make ``cls`` rebuildable from ``command_log`` rows of its ``kind``.

    Registering a second, different class under a taken ``kind`` raises ``InvalidValue``:
    stored rows would otherwise be rebuilt as the wrong command.
    """
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise InvalidValue(f"{cls.__name__} needs a non-empty class attribute 'kind'", field="kind")
    existing = _REGISTRY.get(kind)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise InvalidValue(
            f"command kind {kind!r} is already registered by {existing.__qualname__}",
            field="kind",
        )
    _REGISTRY[kind] = cls
    return cls


def command_class(kind: str) -> type[Any]:
    """The class registered under ``kind`` (``NotFound`` names the kind if none is)."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise NotFound(
            f"no command class is registered for kind {kind!r} "
            "(is the module defining it imported?)",
            field="kind",
            kind=kind,
        ) from None


MODULE_KEY = "__module__"


def stored_payload(command: PersistedCommand) -> dict[str, Any]:
    """The ``command_log.payload`` for ``command``: its ``to_payload()`` plus its module.

    The module name lets another process (the CLI, a restarted server) import the defining
    module on demand before rebuilding, so the registry need not be filled up front.
    """
    return {**command.to_payload(), MODULE_KEY: type(command).__module__}


def command_from_payload(kind: str, payload: dict[str, Any]) -> PersistedCommand:
    """Rebuild a stored command from its ``command_log`` ``kind`` and ``payload``."""
    data = dict(payload)
    module = data.pop(MODULE_KEY, None)
    if kind not in _REGISTRY and isinstance(module, str):
        importlib.import_module(module)
    cmd: PersistedCommand = command_class(kind).from_payload(data)
    return cmd


def registered_kinds() -> list[str]:
    """Every registered kind, sorted (for diagnostics and tests)."""
    return sorted(_REGISTRY)
