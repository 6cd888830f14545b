"""Who owns what in the catalog: line items → campaigns → advertisers, read in one place.

The command layer asks which line items a change governs (to say whether undone changes already
served), delivery asks which campaign and advertiser an event's line item belongs to (reports by
advertiser), the API asks who owns an object (advertiser keys see only their own).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from adtarget.catalog.tables import Campaign, LineItem

__all__ = ["campaign_owner", "governed_line_items", "line_item_owners"]


def governed_line_items(
    session: Session,
    *,
    line_items: Iterable[int] = (),
    campaigns: Collection[int] = (),
    advertisers: Collection[int] = (),
) -> list[int]:
    """The given line items plus every line item of the given campaigns and advertisers, sorted."""
    items = set(line_items)
    campaign_ids = set(campaigns)
    if advertisers:
        campaign_ids.update(
            session.scalars(select(Campaign.id).where(Campaign.advertiser_id.in_(advertisers)))
        )
    if campaign_ids:
        items.update(
            session.scalars(select(LineItem.id).where(LineItem.campaign_id.in_(campaign_ids)))
        )
    return sorted(items)


def line_item_owners(session: Session, ids: Collection[int]) -> dict[int, tuple[int, int]]:
    """``line_item_id -> (campaign_id, advertiser_id)`` for the ids that exist."""
    if not ids:
        return {}
    stmt = (
        select(LineItem.id, Campaign.id, Campaign.advertiser_id)
        .join(Campaign, Campaign.id == LineItem.campaign_id)
        .where(LineItem.id.in_(list(ids)))
    )
    return {li: (camp, adv) for li, camp, adv in session.execute(stmt)}


def campaign_owner(session: Session, campaign_id: int | None) -> int | None:
    """The advertiser of a campaign (``None`` when there is no such campaign)."""
    if campaign_id is None:
        return None
    return session.scalar(select(Campaign.advertiser_id).where(Campaign.id == campaign_id))
