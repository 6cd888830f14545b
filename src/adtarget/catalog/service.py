"""Catalog services: the keyword-only entry points other modules call to read and change it.

Services take the session, flush (so ids exist) and never commit: a command is one unit of work
and its caller owns the transaction, which keeps undo exact. One generic path serves every kind
(``create(kind=...)``, ``update``, ``get``, ``list_objects``; the engine is ``catalog.crud``):
``data``/``changes`` may be the pydantic ``XCreate``/``XUpdate`` models or plain mappings
(validated into them, errors naming the field).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adtarget.catalog.checks import dimension_registry
from adtarget.catalog.crud import (
    attach_creative,
    change_status,
    create,
    create_ad_format,
    detach_creative,
    get,
    list_creative_ids,
    list_objects,
    update,
)
from adtarget.catalog.kinds import kind_named
from adtarget.catalog.models import MAX_INT32
from adtarget.catalog.tables import AdFormat, Base, Campaign, LineItem
from adtarget.catalog.upload_jobs import latest_published_snapshot
from adtarget.errors import NotFound

__all__ = [
    "ad_format_names",
    "attach_creative",
    "campaign_currencies",
    "change_status",
    "create",
    "create_ad_format",
    "detach_creative",
    "dimension_registry",
    "find",
    "get",
    "get_ad_format",
    "latest_published_snapshot",
    "list_ad_formats",
    "list_creative_ids",
    "list_line_items",
    "list_objects",
    "max_id",
    "names_by_id",
    "page",
    "update",
]


def list_line_items(
    *,
    session: Session,
    campaign_id: int | None = None,
    advertiser_id: int | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[LineItem]:
    """Line items by id, optionally of one campaign / advertiser / in one status."""
    query = select(LineItem).order_by(LineItem.id)
    if advertiser_id is not None:
        query = query.join(Campaign).where(Campaign.advertiser_id == advertiser_id)
    if campaign_id is not None:
        query = query.where(LineItem.campaign_id == campaign_id)
    if status is not None:
        query = query.where(LineItem.status == status)
    query = query.limit(min(max(limit, 1), 1000)).offset(max(offset, 0))
    return list(session.scalars(query))


def get_ad_format(*, session: Session, name: str) -> AdFormat:
    """One ad format by name, or ``NotFound``."""
    fmt = session.get(AdFormat, name)
    if fmt is None:
        raise NotFound(f"ad format {name!r} does not exist", field="format")
    return fmt


def list_ad_formats(*, session: Session) -> list[AdFormat]:
    """Every registered ad format, by name."""
    return list(session.scalars(select(AdFormat).order_by(AdFormat.name)))


def ad_format_names(*, session: Session) -> frozenset[str]:
    """The names in the ad-format registry (the decision route checks requested formats)."""
    return frozenset(session.scalars(select(AdFormat.name)))


def find(*, session: Session, kind: str, obj_id: int) -> Base | None:
    """One object by id, or ``None`` (the caller words its own 404). An id no row can have
    (outside 1..2**31-1) is ``None`` too, not a database error with no field named."""
    if not 1 <= obj_id <= MAX_INT32:
        return None
    return session.get(kind_named(kind).table, obj_id)


def page(
    *,
    session: Session,
    kind: str,
    limit: int,
    status: str | None = None,
    after: int | None = None,
    filters: Mapping[str, Any] | None = None,
    scoped: bool = False,
    advertiser_id: int | None = None,
) -> list[Base]:
    """One page of ``kind`` by ascending id: ids above ``after``, equal ``filters`` (a line
    item's ``advertiser_id`` is its campaign's); when ``scoped``, only ``advertiser_id``'s
    objects (its own advertiser, campaigns, creatives, line items; its own and global
    segments; an advertiser key without an advertiser sees none of them)."""
    table: Any = kind_named(kind).table
    stmt = select(table)
    if status is not None:
        stmt = stmt.where(table.status == status)
    if after is not None:
        stmt = stmt.where(table.id > after)
    joined = False
    for name, value in (filters or {}).items():
        if kind == "line_item" and name == "advertiser_id":
            stmt = stmt.join(Campaign, Campaign.id == LineItem.campaign_id)
            stmt = stmt.where(Campaign.advertiser_id == value)
            joined = True
        else:
            stmt = stmt.where(getattr(table, name) == value)
    own = advertiser_id
    if scoped:
        if kind == "advertiser":
            stmt = stmt.where(table.id == own)
        elif kind == "line_item":
            if not joined:
                stmt = stmt.join(Campaign, Campaign.id == LineItem.campaign_id)
            stmt = stmt.where(Campaign.advertiser_id == own)
        elif kind == "segment":
            stmt = stmt.where((table.advertiser_id == own) | (table.advertiser_id.is_(None)))
        elif kind in ("campaign", "creative"):
            stmt = stmt.where(table.advertiser_id == own)
    return list(session.scalars(stmt.order_by(table.id).limit(limit)))


def names_by_id(
    *, session: Session, kind: str, ids: Iterable[int], column: str = "name"
) -> dict[int, Any]:
    """``{id: name}`` (or another ``column``) of the ``kind`` objects among ``ids`` that exist;
    one query, for printing names beside ids (CLI tables, report rows, chart legends)."""
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return {}
    table: Any = kind_named(kind).table
    out: dict[int, Any] = {}
    for start in range(0, len(wanted), 500):  # SQLite binds at most 999 parameters
        chunk = wanted[start : start + 500]
        stmt = select(table.id, getattr(table, column)).where(table.id.in_(chunk))
        out.update({int(i): value for i, value in session.execute(stmt).all()})
    return out


def campaign_currencies(*, session: Session, advertiser_id: int | None = None) -> set[str]:
    """The currencies campaigns are in (of one advertiser when given): a chart's spend unit."""
    stmt = select(Campaign.currency).distinct()
    if advertiser_id is not None:
        stmt = stmt.where(Campaign.advertiser_id == advertiser_id)
    return {str(c) for c in session.scalars(stmt)}


def max_id(*, session: Session, kind: str) -> int:
    """The highest id of ``kind`` so far (0 when there is none)."""
    table: Any = kind_named(kind).table
    return int(session.scalar(select(func.max(table.id))) or 0)
