"""Catalog as code: what applying a file would change, field by field (``adtarget plan``).

The file is the whole catalog, like a Terraform configuration: an object it declares that does
not exist is created, one whose written fields differ is updated (only the fields the file
writes are managed), and an advertiser, campaign, line item, creative or rule segment the file
no longer declares is archived (never deleted: delivery history keeps pointing at it).
Dimensions and list segments are registered by uploads, so they are created and updated from
the file but never archived by it. Links between line items and creatives are managed when the
line item lists ``creatives:``.

The plan is computed from the rows read in the caller's session, so ``apply`` recomputes it
inside its own transaction and acts on exactly what it read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from adtarget.catalog.kinds import KINDS
from adtarget.catalog.spec import APPLY_ORDER, CatalogSpec, Decl, fail, normalized
from adtarget.catalog.tables import (
    Advertiser,
    Base,
    Campaign,
    Creative,
    Dimension,
    LineItem,
    LineItemCreative,
    Segment,
)

Path = tuple[str, ...]
#: Archive children before parents, so no step sees an archived parent with live children.
ARCHIVE_ORDER = ("line_item", "campaign", "creative", "segment", "advertiser")


class PlanDict(TypedDict):
    """A plan as JSON (``adtarget plan --json``, the apply command's result)."""

    file: str
    actions: list[dict[str, Any]]
    summary: dict[str, int]


@dataclass(frozen=True)
class Action:
    """One step of a plan.

    ``op`` is ``create`` / ``update`` / ``archive`` / ``attach`` / ``detach``. ``changes`` maps
    a field to ``(old, new)`` (``old`` is ``None`` on create). For links, ``path`` is the line
    item's and ``creative`` the creative's path.
    """

    op: str
    kind: str
    path: Path
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    obj_id: int | None = None
    creative: Path | None = None
    advertiser: str | None = None

    @property
    def label(self) -> str:
        """``campaign 'Acme / Spring'``."""
        return f"{self.kind} {' / '.join(self.path)!r}"

    def to_dict(self) -> dict[str, Any]:
        """JSON for ``adtarget plan --json``."""
        out: dict[str, Any] = {"op": self.op, "kind": self.kind, "path": list(self.path)}
        if self.obj_id is not None:
            out["id"] = self.obj_id
        if self.changes:
            out["changes"] = {k: {"old": o, "new": n} for k, (o, n) in self.changes.items()}
        if self.creative is not None:
            out["creative"] = list(self.creative)
        return out


@dataclass
class Plan:
    """The ordered steps that make the catalog match the file."""

    source: str
    actions: list[Action] = field(default_factory=list)
    #: Ids of the objects that exist, by ``(kind, path)`` (apply adds the ones it creates).
    ids: dict[tuple[str, Path], int] = field(default_factory=dict)

    def count(self, op: str) -> int:
        """How many steps of ``op``."""
        return sum(1 for a in self.actions if a.op == op)

    @property
    def empty(self) -> bool:
        """True when the catalog already matches the file."""
        return not self.actions

    def summary(self) -> str:
        """``2 to create, 1 to update, 0 to archive, 1 link change``."""
        links = self.count("attach") + self.count("detach")
        return (
            f"{self.count('create')} to create, {self.count('update')} to update, "
            f"{self.count('archive')} to archive, {links} link change{'s' * (links != 1)}"
        )

    def to_dict(self) -> PlanDict:
        """JSON for ``adtarget plan --json``."""
        return {
            "file": self.source,
            "actions": [a.to_dict() for a in self.actions],
            "summary": {
                op: self.count(op) for op in ("create", "update", "archive", "attach", "detach")
            },
        }


@dataclass
class Existing:
    """The catalog's rows by path, read once."""

    rows: dict[str, dict[Path, Base]]
    links: dict[int, set[int]]
    creative_paths: dict[int, Path]


def read_existing(session: Session) -> Existing:
    """Every catalog object keyed by its name path (archived ones included)."""
    advertisers = {a.id: a for a in session.scalars(select(Advertiser))}
    campaigns = {c.id: c for c in session.scalars(select(Campaign))}
    rows: dict[str, dict[Path, Base]] = {k: {} for k in APPLY_ORDER}
    for a in advertisers.values():
        rows["advertiser"][(a.name,)] = a
    for c in campaigns.values():
        rows["campaign"][(advertisers[c.advertiser_id].name, c.name)] = c
    creative_paths: dict[int, Path] = {}
    for cr in session.scalars(select(Creative)):
        path = (advertisers[cr.advertiser_id].name, cr.name)
        rows["creative"][path] = cr
        creative_paths[cr.id] = path
    for li in session.scalars(select(LineItem)):
        camp = campaigns[li.campaign_id]
        rows["line_item"][(advertisers[camp.advertiser_id].name, camp.name, li.name)] = li
    for s in session.scalars(select(Segment)):
        rows["segment"][(s.name,)] = s
    for d in session.scalars(select(Dimension)):
        rows["dimension"][(d.name,)] = d
    links: dict[int, set[int]] = {}
    for link in session.scalars(select(LineItemCreative)):
        links.setdefault(link.line_item_id, set()).add(link.creative_id)
    return Existing(rows, links, creative_paths)


def current_fields(kind: str, obj: Base) -> dict[str, Any]:
    """An existing row's create-model fields, normalised like a file's (JSON form)."""
    read = KINDS[kind].read.model_validate(obj).model_dump(mode="json")
    wanted = set(KINDS[kind].create.model_fields)
    picked = {k: v for k, v in read.items() if k in wanted}
    try:
        return normalized(kind, picked, only_set=False)
    except ValidationError:
        return picked  # a legacy row the model would refuse: compare as stored


def make_plan(session: Session, spec: CatalogSpec, *, archive: bool = True) -> Plan:
    """The steps that make the catalog in ``session`` match ``spec``."""
    have = read_existing(session)
    plan = Plan(source=spec.source)
    plan.ids = {(k, p): o.id for k, rows in have.rows.items() for p, o in rows.items()}  # type: ignore[attr-defined]
    for decl in spec.ordered():
        step = _step(spec, have, decl)
        if step is not None:
            plan.actions.append(step)
    plan.actions.extend(_link_steps(spec, have))
    if archive:
        plan.actions.extend(_archive_steps(spec, have))
    return plan


def _step(spec: CatalogSpec, have: Existing, decl: Decl) -> Action | None:
    obj = have.rows[decl.kind].get(decl.path)
    wanted = normalized(decl.kind, decl.fields, only_set=True)
    if obj is None:
        return Action(
            "create",
            decl.kind,
            decl.path,
            {k: (None, v) for k, v in wanted.items()},
            advertiser=decl.advertiser,
        )
    current = current_fields(decl.kind, obj)
    if current.get("status") == "archived" and wanted.get("status") != "archived":
        raise fail(
            spec.source,
            decl.label,
            f"is archived in the catalog (id {obj.id}, archived is final); give it another "  # type: ignore[attr-defined]
            "name to make a new one",
            "name",
        )
    changes = {k: (current.get(k), v) for k, v in wanted.items() if current.get(k) != v}
    if decl.kind == "segment":
        owner = getattr(obj, "advertiser_id", None)
        owner_name = next(
            (p[0] for p, a in have.rows["advertiser"].items() if a.id == owner),  # type: ignore[attr-defined]
            None,
        )
        if owner_name != decl.advertiser:
            raise fail(
                spec.source, decl.label, "a segment's advertiser cannot be changed", "advertiser"
            )
    update_model = KINDS[decl.kind].update
    updatable = set(update_model.model_fields) if update_model is not None else set()
    fixed = [k for k in changes if k not in updatable]
    if fixed:
        old, new = changes[fixed[0]]
        raise fail(
            spec.source,
            decl.label,
            f"cannot be changed once created ({old!r} in the catalog, {new!r} in the file); "
            "declare a new object under another name",
            fixed[0],
        )
    if not changes:
        return None
    return Action("update", decl.kind, decl.path, changes, obj_id=obj.id)  # type: ignore[attr-defined]


def _link_steps(spec: CatalogSpec, have: Existing) -> list[Action]:
    out: list[Action] = []
    for decl in spec.of_kind("line_item"):
        if decl.creatives is None:
            continue
        wanted = {(decl.path[0], name) for name in decl.creatives}
        obj = have.rows["line_item"].get(decl.path)
        current: set[Path] = set()
        if obj is not None:
            ids = have.links.get(obj.id, set())  # type: ignore[attr-defined]
            current = {have.creative_paths[i] for i in ids}
        obj_id = obj.id if obj is not None else None  # type: ignore[attr-defined]
        for cpath in sorted(current - wanted):
            out.append(Action("detach", "line_item", decl.path, obj_id=obj_id, creative=cpath))
        for name in decl.creatives:
            cpath = (decl.path[0], name)
            if cpath not in current:
                out.append(Action("attach", "line_item", decl.path, obj_id=obj_id, creative=cpath))
    return out


def _archive_steps(spec: CatalogSpec, have: Existing) -> list[Action]:
    out: list[Action] = []
    for kind in ARCHIVE_ORDER:
        declared = spec.paths(kind)
        for path, obj in sorted(have.rows[kind].items()):
            status = getattr(obj, "status", None)
            if path in declared or status == "archived":
                continue
            if kind == "segment" and getattr(obj, "kind", None) != "rule":
                continue
            out.append(
                Action(
                    "archive",
                    kind,
                    path,
                    {"status": (status, "archived")},
                    obj_id=obj.id,  # type: ignore[attr-defined]
                )
            )
    return out
