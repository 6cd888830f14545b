"""The rows the decision index is built from: live line items, their campaigns and creatives.

Why a few set-wide queries: the index is rebuilt whenever the catalog changes; one query per
table keeps the rebuild cost flat in the number of line items instead of one round trip per row.
Plain column tuples, not ORM objects (materialising those was a third of a rebuild), and JSON
columns as their stored text, so ``decision/rebuild_cache.py`` decodes unchanged values once.
The decision package turns these rows into ``LiveLineItem``s (``decision/loader.py``); the
column order of each function is part of its contract.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, Text, and_, cast, func, or_, select, text
from sqlalchemy.orm import Session

from adtarget.catalog.tables import (
    Advertiser,
    Campaign,
    Creative,
    LineItem,
    LineItemCreative,
    Segment,
)

__all__ = [
    "FETCH_ROWS",
    "affected_line_items",
    "catalog_marker",
    "line_item_statuses",
    "live_campaigns",
    "live_creatives",
    "live_rows",
    "rule_segment_rows",
    "small_segments",
]

FETCH_ROWS = 2000
"""Rows per driver fetch: one ``fetchall`` of 100,000 rows held the GIL (every request thread)
for ~90 ms; fetching in chunks bounds each C call."""


_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")


# The columns of a live line item and of its campaign with the advertiser, in the order
# ``decision/loader.py`` unpacks them (``catalog/patch_reads.py`` reads the same).
LINE_ITEM_COLUMNS = (
    LineItem.id,
    LineItem.priority,
    LineItem.bid_cpm,
    cast(LineItem.formats, Text),
    LineItem.start,
    LineItem.end,
    LineItem.budget_total,
    LineItem.pacing_mode,
    LineItem.frequency_cap_count,
    LineItem.frequency_cap_window_seconds,
    LineItem.targeting,
    cast(LineItem.targeting_json, Text),
    LineItem.campaign_id,
)
CAMPAIGN_COLUMNS = (
    Campaign.id,
    Campaign.start,
    Campaign.end,
    Campaign.budget_total,
    Campaign.budget_daily,
    Campaign.pacing_mode,
    Campaign.timezone,
    cast(Campaign.dayparting, Text),
    Campaign.frequency_cap_count,
    Campaign.frequency_cap_window_seconds,
    Advertiser.id,
    Advertiser.frequency_cap_count,
    Advertiser.frequency_cap_window_seconds,
    Campaign.category,
    Advertiser.category,
)
# A line item's creatives as the loader unpacks them, and which creatives may serve.
CREATIVE_COLUMNS = (
    LineItemCreative.line_item_id,
    Creative.id,
    Creative.format,
    cast(Creative.attributes, Text),
)
SERVABLE_CREATIVE = and_(
    Creative.id == LineItemCreative.creative_id,
    Creative.status == "active",
    Creative.approval_status == "approved",
)


def _set_wide(session: Session) -> None:
    """Before a query over the whole catalog on PostgreSQL: no nested-loop joins until the
    transaction ends (``SET LOCAL``).

    Why: with missing or stale statistics (a catalog just bulk-loaded, autovacuum off or not yet
    run) the planner estimates one row per table and nests loops over 1,000 campaigns x 1,000
    creatives x 100,000 line items: ``live_creatives`` ran for minutes inside the rebuild's
    transaction (the long-open transactions seen under load; measured 133 ms with hash joins on
    the same 100k catalog). A set-wide read of every row never wants nested loops; a patch's
    reads of a few ids (``ids`` given) keep them.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SET LOCAL enable_nestloop = off"))


def _only(query: _S, ids: Collection[int] | None) -> _S:
    """``query`` restricted to the line items ``ids`` (``None``: all of them; an index patch
    reads the same rows for a few line items, so a patched item equals a rebuilt one)."""
    return query if ids is None else query.where(LineItem.id.in_(sorted(ids)))


def rule_segment_rows(session: Session) -> list[tuple[str, str | None, str | None]]:
    """``(name, rule text, rule JSON as stored text)`` of every rule segment, by name."""
    rows = session.execute(
        select(Segment.name, Segment.rule, cast(Segment.rule_json, Text))
        .where(Segment.kind == "rule")
        .order_by(Segment.name)
    )
    return [(name, text, json_text) for name, text, json_text in rows]


def segment_owners(session: Session) -> dict[str, int]:
    """Advertiser-owned segments (any kind, any status) -> their advertiser; global ones are
    absent. The loader refuses a line item whose targeting reaches another advertiser's."""
    rows = session.execute(
        select(Segment.name, Segment.advertiser_id).where(Segment.advertiser_id.is_not(None))
    )
    return {name: int(owner) for name, owner in rows if owner is not None}


def small_segments(session: Session, min_size: int) -> dict[str, int]:
    """Segments whose size at the last publish is below ``min_size`` (never computed: absent)."""
    rows = session.execute(
        select(Segment.name, Segment.last_size).where(Segment.last_size < min_size)
    )
    return {name: int(size or 0) for name, size in rows}


def line_item_statuses(
    session: Session, ids: Collection[int] | None = None
) -> list[tuple[int, str, int, str]]:
    """``(line item id, its status, campaign id, campaign status)`` of every line item, by id."""
    if ids is None:
        _set_wide(session)
    rows = session.execute(
        _only(
            select(LineItem.id, LineItem.status, Campaign.id, Campaign.status)
            .join(Campaign, Campaign.id == LineItem.campaign_id)
            .order_by(LineItem.id),
            ids,
        )
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def live_rows(session: Session, ids: Collection[int] | None = None) -> Sequence[Any]:
    """One row per line item whose line item and campaign are both active.

    Plain tuples, not ORM objects (materialising those was a third of a rebuild), and the JSON
    columns as their stored text, so unchanged values are decoded once per ``RebuildCache``.
    Campaign and advertiser columns come once per campaign (``live_campaigns``), not once per
    line item. Column order is what ``decision/loader.py`` unpacks.
    """
    if ids is None:
        _set_wide(session)
    query = _only(
        select(*LINE_ITEM_COLUMNS)
        .join(Campaign, Campaign.id == LineItem.campaign_id)
        .where(LineItem.status == "active", Campaign.status == "active")
        .order_by(LineItem.id),
        ids,
    )
    if ids is not None:  # a patch's few rows: one fetch (a server-side cursor, which
        return session.execute(query).all()  # ``yield_per`` makes on PostgreSQL, is 2 more trips)
    return session.execute(query.execution_options(yield_per=FETCH_ROWS)).all()


def live_campaigns(
    session: Session, campaign_ids: Collection[int] | None = None
) -> dict[int, tuple[Any, ...]]:
    """Active campaigns with their advertiser's caps and both competitive categories, by id
    (column order: the loader's)."""
    query = (
        select(*CAMPAIGN_COLUMNS)
        .join(Advertiser, Advertiser.id == Campaign.advertiser_id)
        .where(Campaign.status == "active")
    )
    if campaign_ids is not None:
        query = query.where(Campaign.id.in_(sorted(campaign_ids)))
    return {row[0]: tuple(row) for row in session.execute(query)}


def live_creatives(
    session: Session, ids: Collection[int] | None = None
) -> dict[int, list[tuple[int, str, str | None]]]:
    """``(creative id, format, attributes as stored JSON text)`` of approved, active creatives
    per active line item, ascending (the attributes give a pod its creatives' durations)."""
    if ids is None:
        _set_wide(session)
    query = _only(
        select(*CREATIVE_COLUMNS)
        .join(LineItem, LineItem.id == LineItemCreative.line_item_id)
        .join(Campaign, Campaign.id == LineItem.campaign_id)
        .join(Creative, SERVABLE_CREATIVE)
        .where(LineItem.status == "active", Campaign.status == "active")
        .order_by(LineItemCreative.line_item_id, Creative.id),
        ids,
    )
    out: dict[int, list[tuple[int, str, str | None]]] = {}
    for li_id, creative_id, fmt, attributes in session.execute(query):
        out.setdefault(li_id, []).append((creative_id, fmt, attributes))
    return out


def catalog_marker(session: Session) -> tuple[Any, ...]:
    """A cheap fingerprint of everything the live set depends on (one query).

    Any insert, update or delete of a line item, campaign, advertiser, creative, attachment or
    segment changes a count or a ``max(updated_at)``/``max(created_at)``.
    """
    parts: list[Any] = []
    for table, col in (
        (LineItem, LineItem.updated_at),
        (Campaign, Campaign.updated_at),
        (Advertiser, Advertiser.updated_at),
        (Creative, Creative.updated_at),
        (Segment, Segment.updated_at),
        (LineItemCreative, LineItemCreative.created_at),
    ):
        parts.append(select(func.count()).select_from(table).scalar_subquery())
        parts.append(select(func.max(col)).scalar_subquery())
    parts.append(select(func.sum(LineItem.version)).scalar_subquery())
    parts.append(select(func.sum(Campaign.version)).scalar_subquery())
    row = session.execute(select(*parts)).one()
    return tuple(row)


def affected_line_items(
    session: Session | Connection, changes: Collection[tuple[str, int]], *, at_most: int
) -> set[int] | None:
    """The line items whose live state a set of ``(kind, id)`` writes can change; ``None`` when
    more than ``at_most`` (a full rebuild is then cheaper than a patch).

    A campaign reaches its line items, an advertiser those of its campaigns, a creative the
    line items linked to it, and a segment every line item whose stored rule mentions a
    segment at all (segments nest, so a superset: reloading an unchanged item is harmless).
    """
    by_kind: dict[str, set[int]] = {}
    for kind, entity_id in changes:
        by_kind.setdefault(kind, set()).add(entity_id)
    found = set(by_kind.get("line_item", ()))
    queries: list[Select[int]] = []
    if "campaign" in by_kind:
        queries.append(
            select(LineItem.id).where(LineItem.campaign_id.in_(sorted(by_kind["campaign"])))
        )
    if "advertiser" in by_kind:
        queries.append(
            select(LineItem.id)
            .join(Campaign, Campaign.id == LineItem.campaign_id)
            .where(Campaign.advertiser_id.in_(sorted(by_kind["advertiser"])))
        )
    if "creative" in by_kind:
        queries.append(
            select(LineItemCreative.line_item_id).where(
                LineItemCreative.creative_id.in_(sorted(by_kind["creative"]))
            )
        )
    if "segment" in by_kind:
        queries.append(
            select(LineItem.id).where(
                or_(
                    func.lower(LineItem.targeting).like("%segment%"),
                    cast(LineItem.targeting_json, Text).like("%segment%"),
                )
            )
        )
    for query in queries:
        found.update(session.execute(query.limit(at_most + 1)).scalars())
        if len(found) > at_most:
            return None
    return found
