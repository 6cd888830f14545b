"""Catalog as code: the current catalog written in the file format ``adtarget apply`` reads.

Archived objects are left out (archived is final; an apply leaves them alone), as are list
segments (their members come from uploads). Fields at their default are omitted to keep the
file short; applying an export to the catalog it came from plans no change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticUndefined

from adtarget.catalog.kinds import KINDS
from adtarget.catalog.plan import Existing, current_fields, read_existing
from adtarget.catalog.spec import FORMAT_VERSION, PARENT_FIELD
from adtarget.catalog.tables import Base

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _fields(kind: str, obj: Base) -> dict[str, Any]:
    """The object's fields without ids, ``None``s and defaults; ``name`` first."""
    model = KINDS[kind].create
    current = current_fields(kind, obj)
    out: dict[str, Any] = {"name": current.pop("name")}
    for key, value in current.items():
        if key in (PARENT_FIELD.get(kind), "advertiser_id") or value is None:
            continue
        info = model.model_fields[key]
        default = info.get_default(call_default_factory=True)
        if key != "status" and default is not PydanticUndefined and value == default:
            continue
        out[key] = value
    return out


def _live(obj: Base) -> bool:
    return getattr(obj, "status", None) != "archived"


def export_document(session: Session) -> dict[str, Any]:
    """The catalog in ``session`` as a catalog-file document (dicts and lists)."""
    have: Existing = read_existing(session)
    rows = have.rows
    doc: dict[str, Any] = {"version": FORMAT_VERSION}
    dims = [_fields("dimension", d) for _, d in sorted(rows["dimension"].items()) if _live(d)]
    if dims:
        doc["dimensions"] = dims
    advertisers: list[dict[str, Any]] = []
    for (adv_name,), adv in sorted(rows["advertiser"].items()):
        if not _live(adv):
            continue
        entry = _fields("advertiser", adv)
        creatives = [
            _fields("creative", c)
            for path, c in sorted(rows["creative"].items())
            if path[0] == adv_name and _live(c)
        ]
        campaigns = []
        for cpath, camp in sorted(rows["campaign"].items()):
            if cpath[0] != adv_name or not _live(camp):
                continue
            centry = _fields("campaign", camp)
            items = []
            for lpath, li in sorted(rows["line_item"].items()):
                if lpath[:2] != cpath or not _live(li):
                    continue
                lentry = _fields("line_item", li)
                linked = sorted(have.creative_paths[i][1] for i in have.links.get(li.id, ()))  # type: ignore[attr-defined]
                if linked:
                    lentry["creatives"] = linked
                items.append(lentry)
            if items:
                centry["line_items"] = items
            campaigns.append(centry)
        if creatives:
            entry["creatives"] = creatives
        if campaigns:
            entry["campaigns"] = campaigns
        advertisers.append(entry)
    if advertisers:
        doc["advertisers"] = advertisers
    names = {a.id: p[0] for p, a in rows["advertiser"].items()}  # type: ignore[attr-defined]
    segments = []
    for _, seg in sorted(rows["segment"].items()):
        if not _live(seg) or getattr(seg, "kind", None) != "rule":
            continue
        sentry = _fields("segment", seg)
        owner = getattr(seg, "advertiser_id", None)
        if owner is not None:
            sentry["advertiser"] = names[owner]
        segments.append(sentry)
    if segments:
        doc["segments"] = segments
    return doc
