"""Catalog services: the named, keyword-only entry points per kind that the other modules call.

Services take the session, flush (so ids exist) and never commit: a command is one unit of work
and its caller owns the transaction, which keeps undo exact. ``data``/``changes`` may be the
pydantic ``XCreate``/``XUpdate`` models or plain mappings (validated into them, errors naming the
field). The engine they share is ``catalog.crud``; rows as JSON are ``catalog.rows``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from pydantic import BaseModel
from sqlalchemy import select
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
from adtarget.catalog.rows import delete_object, restore_row, to_row_dict
from adtarget.catalog.tables import (
    AdFormat,
    Advertiser,
    Campaign,
    Creative,
    Dimension,
    LineItem,
    Segment,
    UploadJob,
)
from adtarget.errors import NotFound

__all__ = [
    "attach_creative",
    "change_status",
    "create",
    "create_ad_format",
    "delete_object",
    "detach_creative",
    "dimension_registry",
    "get",
    "get_ad_format",
    "list_ad_formats",
    "list_creative_ids",
    "list_line_items",
    "list_objects",
    "restore_row",
    "to_row_dict",
    "update",
    "create_advertiser",
    "update_advertiser",
    "get_advertiser",
    "list_advertisers",
    "create_campaign",
    "update_campaign",
    "get_campaign",
    "list_campaigns",
    "create_line_item",
    "update_line_item",
    "get_line_item",
    "list_line_items",
    "create_creative",
    "update_creative",
    "get_creative",
    "list_creatives",
    "create_segment",
    "update_segment",
    "get_segment",
    "list_segments",
    "create_dimension",
    "update_dimension",
    "get_dimension",
    "list_dimensions",
]

Data: TypeAlias = BaseModel | Mapping[str, Any]


def create_advertiser(*, session: Session, data: Data) -> Advertiser:
    """Create one advertiser; flushed, not committed."""
    obj = create(session=session, kind="advertiser", data=data)
    assert isinstance(obj, Advertiser)
    return obj


def update_advertiser(
    *, session: Session, advertiser_id: int, changes: Data, expected_version: int | None = None
) -> Advertiser:
    """Change the given fields of one advertiser; ``Conflict`` if its version moved on."""
    obj = update(
        session=session,
        kind="advertiser",
        obj_id=advertiser_id,
        changes=changes,
        expected_version=expected_version,
    )
    assert isinstance(obj, Advertiser)
    return obj


def get_advertiser(*, session: Session, advertiser_id: int) -> Advertiser:
    """One advertiser by id, or ``NotFound``."""
    obj = get(session=session, kind="advertiser", obj_id=advertiser_id)
    assert isinstance(obj, Advertiser)
    return obj


def list_advertisers(
    *,
    session: Session,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Advertiser]:
    """Advertisers by id, filtered by the arguments that are not ``None``."""
    rows = list_objects(
        session=session,
        kind="advertiser",
        status=status,
        limit=limit,
        offset=offset,
    )
    return [r for r in rows if isinstance(r, Advertiser)]


def create_campaign(*, session: Session, data: Data) -> Campaign:
    """Create one campaign; flushed, not committed."""
    obj = create(session=session, kind="campaign", data=data)
    assert isinstance(obj, Campaign)
    return obj


def update_campaign(
    *, session: Session, campaign_id: int, changes: Data, expected_version: int | None = None
) -> Campaign:
    """Change the given fields of one campaign; ``Conflict`` if its version moved on."""
    obj = update(
        session=session,
        kind="campaign",
        obj_id=campaign_id,
        changes=changes,
        expected_version=expected_version,
    )
    assert isinstance(obj, Campaign)
    return obj


def get_campaign(*, session: Session, campaign_id: int) -> Campaign:
    """One campaign by id, or ``NotFound``."""
    obj = get(session=session, kind="campaign", obj_id=campaign_id)
    assert isinstance(obj, Campaign)
    return obj


def list_campaigns(
    *,
    session: Session,
    advertiser_id: int | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Campaign]:
    """Campaigns by id, filtered by the arguments that are not ``None``."""
    rows = list_objects(
        session=session,
        kind="campaign",
        advertiser_id=advertiser_id,
        status=status,
        limit=limit,
        offset=offset,
    )
    return [r for r in rows if isinstance(r, Campaign)]


def create_line_item(*, session: Session, data: Data) -> LineItem:
    """Create one line item; flushed, not committed."""
    obj = create(session=session, kind="line_item", data=data)
    assert isinstance(obj, LineItem)
    return obj


def update_line_item(
    *, session: Session, line_item_id: int, changes: Data, expected_version: int | None = None
) -> LineItem:
    """Change the given fields of one line item; ``Conflict`` if its version moved on."""
    obj = update(
        session=session,
        kind="line_item",
        obj_id=line_item_id,
        changes=changes,
        expected_version=expected_version,
    )
    assert isinstance(obj, LineItem)
    return obj


def get_line_item(*, session: Session, line_item_id: int) -> LineItem:
    """One line item by id, or ``NotFound``."""
    obj = get(session=session, kind="line_item", obj_id=line_item_id)
    assert isinstance(obj, LineItem)
    return obj


def create_creative(*, session: Session, data: Data) -> Creative:
    """Create one creative; flushed, not committed."""
    obj = create(session=session, kind="creative", data=data)
    assert isinstance(obj, Creative)
    return obj


def update_creative(
    *, session: Session, creative_id: int, changes: Data, expected_version: int | None = None
) -> Creative:
    """Change the given fields of one creative; ``Conflict`` if its version moved on."""
    obj = update(
        session=session,
        kind="creative",
        obj_id=creative_id,
        changes=changes,
        expected_version=expected_version,
    )
    assert isinstance(obj, Creative)
    return obj


def get_creative(*, session: Session, creative_id: int) -> Creative:
    """One creative by id, or ``NotFound``."""
    obj = get(session=session, kind="creative", obj_id=creative_id)
    assert isinstance(obj, Creative)
    return obj


def list_creatives(
    *,
    session: Session,
    advertiser_id: int | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Creative]:
    """Creatives by id, filtered by the arguments that are not ``None``."""
    rows = list_objects(
        session=session,
        kind="creative",
        advertiser_id=advertiser_id,
        status=status,
        limit=limit,
        offset=offset,
    )
    return [r for r in rows if isinstance(r, Creative)]


def create_segment(*, session: Session, data: Data) -> Segment:
    """Create one segment; flushed, not committed."""
    obj = create(session=session, kind="segment", data=data)
    assert isinstance(obj, Segment)
    return obj


def update_segment(
    *, session: Session, segment_id: int, changes: Data, expected_version: int | None = None
) -> Segment:
    """Change the given fields of one segment; ``Conflict`` if its version moved on."""
    obj = update(
        session=session,
        kind="segment",
        obj_id=segment_id,
        changes=changes,
        expected_version=expected_version,
    )
    assert isinstance(obj, Segment)
    return obj


def get_segment(*, session: Session, segment_id: int) -> Segment:
    """One segment by id, or ``NotFound``."""
    obj = get(session=session, kind="segment", obj_id=segment_id)
    assert isinstance(obj, Segment)
    return obj


def list_segments(
    *,
    session: Session,
    advertiser_id: int | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Segment]:
    """Segments by id, filtered by the arguments that are not ``None``."""
    rows = list_objects(
        session=session,
        kind="segment",
        advertiser_id=advertiser_id,
        status=status,
        limit=limit,
        offset=offset,
    )
    return [r for r in rows if isinstance(r, Segment)]


def create_dimension(*, session: Session, data: Data) -> Dimension:
    """Create one dimension; flushed, not committed."""
    obj = create(session=session, kind="dimension", data=data)
    assert isinstance(obj, Dimension)
    return obj


def update_dimension(
    *, session: Session, dimension_id: int, changes: Data, expected_version: int | None = None
) -> Dimension:
    """Change the given fields of one dimension; ``Conflict`` if its version moved on."""
    obj = update(
        session=session,
        kind="dimension",
        obj_id=dimension_id,
        changes=changes,
        expected_version=expected_version,
    )
    assert isinstance(obj, Dimension)
    return obj


def get_dimension(*, session: Session, dimension_id: int) -> Dimension:
    """One dimension by id, or ``NotFound``."""
    obj = get(session=session, kind="dimension", obj_id=dimension_id)
    assert isinstance(obj, Dimension)
    return obj


def list_dimensions(
    *,
    session: Session,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Dimension]:
    """Dimensions by id, filtered by the arguments that are not ``None``."""
    rows = list_objects(
        session=session,
        kind="dimension",
        status=status,
        limit=limit,
        offset=offset,
    )
    return [r for r in rows if isinstance(r, Dimension)]


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


def latest_published_snapshot(*, session: Session) -> str | None:
    """The snapshot the newest succeeded (non dry-run) upload published, or ``None`` if none has.

    Why decisions ask: a process that finds no snapshot on disk cannot otherwise tell "nothing
    uploaded yet" (context-only matching is right) from "the snapshot directory is missing"
    (context-only matching would treat every user as unknown and serve rules such as
    ``country not in ("CA")`` to Canadians).
    """
    return session.scalar(
        select(UploadJob.snapshot)
        .where(
            UploadJob.status == "succeeded",
            UploadJob.snapshot.is_not(None),
            UploadJob.dry_run.is_(False),
        )
        .order_by(UploadJob.created_at.desc())
        .limit(1)
    )


def ad_format_names(*, session: Session) -> frozenset[str]:
    """The names in the ad-format registry (the decision route checks requested formats)."""
    return frozenset(session.scalars(select(AdFormat.name)))
