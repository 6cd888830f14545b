"""``adtarget apply``: a catalog file applied as ONE undoable command (all or nothing).

Why one command: the person thinks "apply this file", so one ``undo`` must take the whole
apply back, and a step that fails (a rule naming an unknown dimension, a refused status move)
must leave nothing behind. The command recomputes the plan inside its transaction
(``catalog.plan``), runs every step through the catalog service (the same checks as any other
caller), resolves names to the ids it creates as it goes, and records one ``RowChange`` per row
touched, so the shared row undo/redo (``rows``) reverses it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog.plan import Action, Plan, make_plan
from adtarget.catalog.row_store import read_row
from adtarget.catalog.spec import PARENT_FIELD, CatalogSpec, parse_document, wrap
from adtarget.commands import service_adapter as svc
from adtarget.commands.persisted import CommandContext, register_command
from adtarget.commands.row_commands import RowCommand
from adtarget.commands.rows import RowChange
from adtarget.errors import AdtargetError
from adtarget.settings import Settings

PARENT_KIND = {"campaign": "advertiser", "creative": "advertiser", "line_item": "campaign"}


@register_command
@dataclass
class ApplyCatalog(RowCommand):
    """Make the catalog match a catalog file; undo reverses every step at once."""

    kind: ClassVar[str] = "catalog.apply"
    document: dict[str, Any]
    source: str = "catalog"
    archive: bool = True
    description: str = ""
    changes: list[RowChange] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.description:
            self.description = f"apply {self.source}"

    def execute(self, ctx: CommandContext) -> dict[str, Any]:
        """Plan against the rows in this transaction, then run every step."""
        self._check_fresh()
        spec = parse_document(self.document, source=self.source)
        plan = make_plan(ctx.session, spec, archive=self.archive)
        changes: list[RowChange] = []
        for action in plan.actions:
            try:
                changes.extend(_run(ctx.session, spec, plan, action))
            except AdtargetError as err:
                raise wrap(self.source, action.label, err) from None
        self.changes = changes
        self.description = f"apply {self.source}: {plan.summary()}"
        return {
            "file": self.source,
            "plan": plan.to_dict(),
            "created": {
                f"{k} {' / '.join(p)}": i
                for (k, p), i in plan.ids.items()
                if any(a.op == "create" and a.kind == k and a.path == p for a in plan.actions)
            },
        }

    def to_payload(self) -> dict[str, Any]:
        """JSON for ``command_log.payload``."""
        return {
            **self._base_payload(),
            "document": self.document,
            "source": self.source,
            "archive": self.archive,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        """Rebuild from ``to_payload``."""
        return cls(
            document=payload["document"],
            source=payload["source"],
            archive=payload["archive"],
            description=payload["description"],
            changes=[RowChange.from_dict(c) for c in payload["changes"]],
        )


def _run(session: Session, spec: CatalogSpec, plan: Plan, action: Action) -> list[RowChange]:
    """One plan step through the catalog service; the rows it changed."""
    kind = action.kind
    if action.op == "create":
        decl = next(d for d in spec.of_kind(kind) if d.path == action.path)
        data = dict(decl.fields)
        if kind in PARENT_KIND:
            data[PARENT_FIELD[kind]] = plan.ids[(PARENT_KIND[kind], action.path[:-1])]
        if kind == "segment" and decl.advertiser is not None:
            data["advertiser_id"] = plan.ids[("advertiser", (decl.advertiser,))]
        obj = svc.create(session, kind, data)
        plan.ids[(kind, action.path)] = obj.id
        return [RowChange(kind, {"id": obj.id}, None, read_row(session, kind, {"id": obj.id}))]
    if action.op in ("update", "archive"):
        assert action.obj_id is not None
        key = {"id": action.obj_id}
        before = read_row(session, kind, key)
        svc.update(
            session, kind, action.obj_id, {k: n for k, (_, n) in action.changes.items()}, None
        )
        return [RowChange(kind, key, before, read_row(session, kind, key))]
    assert action.creative is not None
    link = {
        "line_item_id": plan.ids[("line_item", action.path)],
        "creative_id": plan.ids[("creative", action.creative)],
    }
    before = read_row(session, "line_item_creative", link)
    if action.op == "attach":
        svc.attach_creative(session, link["line_item_id"], link["creative_id"])
    else:
        svc.detach_creative(session, link["line_item_id"], link["creative_id"])
    return [
        RowChange("line_item_creative", link, before, read_row(session, "line_item_creative", link))
    ]


def check_apply(
    session_factory: sessionmaker[Session],
    command: ApplyCatalog,
    *,
    actor: str,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Run ``command`` in a transaction that is rolled back: the plan, and every error the
    apply would raise, without changing anything (``adtarget plan``)."""
    session = session_factory()
    try:
        session.begin()
        return command.execute(CommandContext(session=session, settings=settings, actor=actor))
    finally:
        session.rollback()
        session.close()
