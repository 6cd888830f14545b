"""The catalog's persisted commands: create, update, attach/detach a creative, and composites.

Each command changes rows through ``adtarget.catalog.service`` (so validation and the status
state machine apply exactly as for any other caller), then records a ``RowChange`` per row it
touched. Undo and redo are shared by all of them (``rows.undo_changes``/``redo_changes``):
they restore snapshots directly, on purpose bypassing the state machine (undoing "draft ->
active" must be able to go back to draft) but never bypassing the version check.

Undo of a create deletes the row. If rows added later point at it (a line item under an
undone campaign, someone else's creative attachment), the undo is refused with ``Conflict``
naming them: deleting would destroy those later changes, and archiving instead would make
redo and "undo all returns the exact start" untrue. Archive it with an update instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from adtarget.catalog.kinds import jsonable, kind_named
from adtarget.catalog.row_store import key_of, read_row
from adtarget.commands import service_adapter as svc
from adtarget.commands.persisted import (
    CommandAlreadyExecuted,
    CommandContext,
    PersistedCommand,
    command_from_payload,
    register_command,
    stored_payload,
)
from adtarget.commands.rows import RowChange, diff, redo_changes, undo_changes


def check_kind(kind: str) -> str:
    """Return ``kind`` if commands change it, else ``InvalidValue`` listing the choices."""
    return kind_named(kind, editable=True).name


class RowCommand:
    """Shared undo/redo/payload for commands whose effect is a list of ``RowChange``."""

    kind: ClassVar[str]
    changes: list[RowChange]
    description: str

    def undo(self, ctx: CommandContext) -> dict[str, Any]:
        """Restore every touched row's ``before`` (refusing rows changed since)."""
        undo_changes(ctx, self.changes, self.description)
        return self._report("undone", ctx)

    def redo(self, ctx: CommandContext) -> dict[str, Any]:
        """Re-apply every touched row's ``after`` (refusing rows changed since)."""
        redo_changes(ctx, self.changes, self.description)
        return self._report("redone", ctx)

    def _report(self, state: str, ctx: CommandContext) -> dict[str, Any]:
        rows = []
        for ch in self.changes:
            row = read_row(ctx.session, ch.kind, ch.key)
            shown = ch.before if state == "undone" else ch.after
            other = ch.after if state == "undone" else ch.before
            rows.append(
                {
                    "kind": ch.kind,
                    "key": ch.key,
                    "row": row,
                    "exists": row is not None,
                    "fields": diff(other, shown),
                }
            )
        return {"description": self.description, "rows": rows}

    def _check_fresh(self) -> None:
        """Refuse a second ``execute`` of an object that already recorded changes."""
        if self.changes:
            raise CommandAlreadyExecuted(
                f"command {self.description!r} was already executed; use redo, or build a new "
                "command to apply the change again"
            )

    def _base_payload(self) -> dict[str, Any]:
        return {"description": self.description, "changes": [c.to_dict() for c in self.changes]}


@register_command
@dataclass
class CreateObject(RowCommand):
    """Create one catalog object; undo deletes it."""

    kind: ClassVar[str] = "catalog.create"
    obj_kind: str
    data: dict[str, Any]
    description: str = ""
    changes: list[RowChange] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_kind(self.obj_kind)
        self.data = jsonable(self.data)
        if not self.description:
            name = self.data.get("name")
            self.description = f"create {self.obj_kind}" + (f" {name!r}" if name else "")

    def execute(self, ctx: CommandContext) -> dict[str, Any]:
        """Create through the catalog service; snapshot the new row."""
        self._check_fresh()
        obj = svc.create(ctx.session, self.obj_kind, self.data)
        result = svc.row_dict(ctx.session, obj)
        after = read_row(ctx.session, self.obj_kind, {"id": obj.id})
        self.changes = [RowChange(self.obj_kind, key_of(self.obj_kind, after or {}), None, after)]
        self.description = f"{self.description} (id {obj.id})"
        return result

    def to_payload(self) -> dict[str, Any]:
        """JSON for ``command_log.payload``."""
        return {**self._base_payload(), "obj_kind": self.obj_kind, "data": self.data}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        """Rebuild from ``to_payload``."""
        return cls(
            obj_kind=payload["obj_kind"],
            data=payload["data"],
            description=payload["description"],
            changes=[RowChange.from_dict(c) for c in payload["changes"]],
        )


@register_command
@dataclass
class UpdateObject(RowCommand):
    """Change fields of one catalog object (status changes included); undo restores them."""

    kind: ClassVar[str] = "catalog.update"
    obj_kind: str
    obj_id: int
    patch: dict[str, Any]
    expected_version: int | None = None
    description: str = ""
    changes: list[RowChange] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_kind(self.obj_kind)
        self.patch = jsonable(self.patch)
        if not self.description:
            fields = ", ".join(f"{k}={v!r}" for k, v in sorted(self.patch.items()))
            self.description = f"update {self.obj_kind} {self.obj_id}: {fields}"

    def execute(self, ctx: CommandContext) -> dict[str, Any]:
        """Update through the catalog service; snapshot the row before and after."""
        self._check_fresh()
        key = {"id": self.obj_id}
        before = read_row(ctx.session, self.obj_kind, key)
        obj = svc.update(ctx.session, self.obj_kind, self.obj_id, self.patch, self.expected_version)
        result = svc.row_dict(ctx.session, obj)
        after = read_row(ctx.session, self.obj_kind, key)
        # A no-op update (same values) writes nothing, so there is nothing to undo.
        self.changes = [] if before == after else [RowChange(self.obj_kind, key, before, after)]
        return result

    def to_payload(self) -> dict[str, Any]:
        """JSON for ``command_log.payload`` (the patch is kept for people reading the log)."""
        return {
            **self._base_payload(),
            "obj_kind": self.obj_kind,
            "obj_id": self.obj_id,
            "patch": self.patch,
            "expected_version": self.expected_version,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        """Rebuild from ``to_payload``."""
        return cls(
            obj_kind=payload["obj_kind"],
            obj_id=payload["obj_id"],
            patch=payload["patch"],
            expected_version=payload.get("expected_version"),
            description=payload["description"],
            changes=[RowChange.from_dict(c) for c in payload["changes"]],
        )


@register_command
@dataclass
class LinkCreative(RowCommand):
    """Attach (or, with ``detach=True``, detach) a creative to a line item."""

    kind: ClassVar[str] = "catalog.link_creative"
    line_item_id: int
    creative_id: int
    detach: bool = False
    description: str = ""
    changes: list[RowChange] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.description:
            verb = "detach" if self.detach else "attach"
            self.description = (
                f"{verb} creative {self.creative_id} "
                f"{'from' if self.detach else 'to'} line item {self.line_item_id}"
            )

    def execute(self, ctx: CommandContext) -> dict[str, Any]:
        """Attach/detach through the catalog service; snapshot the link row."""
        self._check_fresh()
        key = {"line_item_id": self.line_item_id, "creative_id": self.creative_id}
        before = read_row(ctx.session, "line_item_creative", key)
        if self.detach:
            svc.detach_creative(ctx.session, self.line_item_id, self.creative_id)
        else:
            svc.attach_creative(ctx.session, self.line_item_id, self.creative_id)
        after = read_row(ctx.session, "line_item_creative", key)
        self.changes = (
            [] if before == after else [RowChange("line_item_creative", key, before, after)]
        )
        return {**key, "attached": after is not None}

    def to_payload(self) -> dict[str, Any]:
        """JSON for ``command_log.payload``."""
        return {
            **self._base_payload(),
            "line_item_id": self.line_item_id,
            "creative_id": self.creative_id,
            "detach": self.detach,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        """Rebuild from ``to_payload``."""
        return cls(
            line_item_id=payload["line_item_id"],
            creative_id=payload["creative_id"],
            detach=payload["detach"],
            description=payload["description"],
            changes=[RowChange.from_dict(c) for c in payload["changes"]],
        )


@register_command
@dataclass
class Composite:
    """Persisted commands run as one unit (a bulk edit); composites may nest.

    All parts run inside the caller's single transaction, so a part that raises rolls back the
    parts already done with it (the database does the rollback; nothing is logged). Undo runs
    the parts' undos newest-first, redo their redos oldest-first, in one transaction as well.
    """

    kind: ClassVar[str] = "composite"
    description: str
    parts: list[PersistedCommand]

    def execute(self, ctx: CommandContext) -> dict[str, Any]:
        """Execute every part in order; return their results."""
        return {"description": self.description, "results": [p.execute(ctx) for p in self.parts]}

    def undo(self, ctx: CommandContext) -> dict[str, Any]:
        """Undo every part newest-first."""
        done = [p.undo(ctx) for p in reversed(self.parts)]
        return self._report(list(reversed(done)))

    def redo(self, ctx: CommandContext) -> dict[str, Any]:
        """Redo every part oldest-first."""
        return self._report([p.redo(ctx) for p in self.parts])

    def _report(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"description": self.description, "parts": parts}
        notes = {p["note"] for p in parts if "note" in p}
        if notes:
            out["note"] = "; ".join(sorted(notes))
        return out

    def to_payload(self) -> dict[str, Any]:
        """Each part as ``{"kind", "payload"}``."""
        return {
            "description": self.description,
            "parts": [{"kind": p.kind, "payload": stored_payload(p)} for p in self.parts],
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        """Rebuild every part by its kind."""
        return cls(
            description=payload["description"],
            parts=[command_from_payload(p["kind"], p["payload"]) for p in payload["parts"]],
        )


def all_changes(command: Any) -> list[RowChange]:
    """Every ``RowChange`` a command holds, through nested composites (others hold none)."""
    out: list[RowChange] = list(getattr(command, "changes", None) or [])
    for part in getattr(command, "parts", None) or []:
        out.extend(all_changes(part))
    return out


def is_noop(command: Any) -> bool:
    """True for a row command (or composite of them) that changed nothing: not worth logging."""
    if isinstance(command, RowCommand):
        return not command.changes
    if isinstance(command, Composite):
        return all(is_noop(p) for p in command.parts)
    return False
