"""Load the servable line items from the catalog, denormalised into ``LiveLineItem``s.

Why one query: the index is rebuilt whenever the catalog changes; a single join (line item,
campaign, advertiser, approved+active creatives) keeps the rebuild cost flat in the number of
line items instead of one round trip per row. Rule-based segments are inlined here
(``expand_segments``) so the index sees plain predicates; list segments stay ``segment("x")``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from adtarget.catalog.tables import (
    Advertiser,
    Campaign,
    Creative,
    LineItem,
    LineItemCreative,
    Segment,
)
from adtarget.decision.eligibility import parse_dayparting
from adtarget.decision.models import CapLevel, FrequencyCap, LiveLineItem
from adtarget.rules.ast import Rule, segment_names
from adtarget.rules.format import from_json
from adtarget.rules.parse import parse
from adtarget.rules.validate import expand_segments

log = logging.getLogger(__name__)


def _cap(level: CapLevel, owner: int, count: int | None, window: int | None) -> list[FrequencyCap]:
    if count and window:
        return [FrequencyCap(level, owner, int(count), int(window))]
    return []


def _segment_rules(session: Session) -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    rows = session.execute(
        select(Segment.name, Segment.rule, Segment.rule_json).where(Segment.kind == "rule")
    )
    for name, text, obj in rows:
        try:
            out[name] = from_json(obj) if obj else parse(text or "")
        except Exception:  # a broken stored segment must not stop every other line item
            log.warning("segment %r has an unreadable rule; references stay unresolved", name)
    return out


def _tiny_segments(session: Session, min_size: int) -> dict[str, int]:
    """Segments whose size at the last publish is below ``min_size`` (never computed: allowed)."""
    if min_size <= 0:
        return {}
    rows = session.execute(
        select(Segment.name, Segment.last_size).where(Segment.last_size < min_size)
    )
    return {name: int(size or 0) for name, size in rows}


def _rule_of(
    li: LineItem, segments: Mapping[str, Rule], tiny: Mapping[str, int] | None = None
) -> Rule | None:
    if li.targeting_json:
        rule = from_json(li.targeting_json)
    elif li.targeting and li.targeting.strip():
        rule = parse(li.targeting)
    else:
        return None
    if tiny:
        for name in sorted(segment_names(rule)):
            if name in tiny:
                raise TinySegment(name, tiny[name])
    return expand_segments(rule, segments.get) if segments else rule


class TinySegment(Exception):
    """A line item names a segment that shrank below the minimum audience size since it was
    written (writes are refused then; this catches the segment shrinking afterwards)."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__(f"segment {name!r} has {size} users, below the minimum audience size")
        self.name = name


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


NotLive = tuple[int, str, str]
"""``(line_item_id, reason, detail)`` of a catalog line item that cannot serve at all."""


@dataclass(frozen=True, slots=True)
class LoadedCatalog:
    """The live set plus, for ``explain``, why every other line item is not in it."""

    items: list[LiveLineItem]
    not_live: list[NotLive] = field(default_factory=list)


def load_live_line_items(session: Session) -> list[LiveLineItem]:
    """Line items and campaigns both ``active`` with at least one approved, active creative.

    A line item whose stored rule cannot be read is skipped with a warning (it cannot be served
    correctly, and must not take the others down).
    """
    return _load_live(session, {})


def load_catalog(session: Session, *, min_segment_size: int = 0) -> LoadedCatalog:
    """``load_live_line_items`` and the first reason each other line item cannot serve.

    Reasons: ``status`` (line item or campaign not active), ``no_creative`` (no approved, active
    creative in its formats), ``invalid`` (stored rule or dayparting unreadable). One extra
    query over ids and statuses, so explain can name them without touching the request path.
    """
    skipped: dict[int, str] = {}
    tiny: dict[int, str] = {}
    items = _load_live(session, skipped, _tiny_segments(session, min_segment_size), tiny)
    live = {it.id for it in items}
    not_live: list[NotLive] = []
    rows = session.execute(
        select(LineItem.id, LineItem.status, Campaign.id, Campaign.status)
        .join(Campaign, Campaign.id == LineItem.campaign_id)
        .order_by(LineItem.id)
    )
    for li_id, li_status, camp_id, camp_status in rows:
        if li_id in live:
            continue
        if li_status != "active":
            not_live.append((li_id, "status", f"line item is {li_status}"))
        elif camp_status != "active":
            not_live.append((li_id, "status", f"campaign {camp_id} is {camp_status}"))
        elif li_id in tiny:
            not_live.append((li_id, "segment_below_minimum", tiny[li_id]))
        elif li_id in skipped:
            not_live.append((li_id, "invalid", skipped[li_id]))
        else:
            not_live.append(
                (li_id, "no_creative", "no approved, active creative in the line item's formats")
            )
    return LoadedCatalog(items, not_live)


def _load_live(
    session: Session,
    skipped: dict[int, str],
    tiny_segments: Mapping[str, int] | None = None,
    tiny: dict[int, str] | None = None,
) -> list[LiveLineItem]:
    segments = _segment_rules(session)
    stmt = (
        select(LineItem, Campaign, Advertiser, Creative.id, Creative.format)
        .join(Campaign, Campaign.id == LineItem.campaign_id)
        .join(Advertiser, Advertiser.id == Campaign.advertiser_id)
        .join(LineItemCreative, LineItemCreative.line_item_id == LineItem.id)
        .join(
            Creative,
            and_(
                Creative.id == LineItemCreative.creative_id,
                Creative.status == "active",
                Creative.approval_status == "approved",
            ),
        )
        .where(LineItem.status == "active", Campaign.status == "active")
        .order_by(LineItem.id, Creative.id)
    )
    grouped: dict[int, tuple[LineItem, Campaign, Advertiser, dict[str, list[int]]]] = {}
    for li, camp, adv, creative_id, fmt in session.execute(stmt):
        entry = grouped.get(li.id)
        if entry is None:
            entry = grouped[li.id] = (li, camp, adv, {})
        if li.formats and fmt not in li.formats:
            continue
        entry[3].setdefault(fmt, []).append(creative_id)
    out: list[LiveLineItem] = []
    for li, camp, adv, creatives in grouped.values():
        if not creatives:
            continue
        try:
            rule = _rule_of(li, segments, tiny_segments)
            daypart = parse_dayparting(camp.dayparting)
        except TinySegment as exc:
            if tiny is not None:
                tiny[li.id] = str(exc)
            continue
        except Exception as exc:
            log.warning("line item %s skipped: %s", li.id, exc)
            skipped[li.id] = f"unreadable targeting or dayparting: {exc}"
            continue
        caps = (
            _cap("line_item", li.id, li.frequency_cap_count, li.frequency_cap_window_seconds)
            + _cap("campaign", camp.id, camp.frequency_cap_count, camp.frequency_cap_window_seconds)
            + _cap("advertiser", adv.id, adv.frequency_cap_count, adv.frequency_cap_window_seconds)
        )
        out.append(
            LiveLineItem(
                id=li.id,
                campaign_id=camp.id,
                advertiser_id=adv.id,
                priority=li.priority,
                bid_cpm=float(li.bid_cpm),
                rule=rule,
                formats=tuple(li.formats or ()),
                creatives={k: tuple(v) for k, v in creatives.items()},
                caps=tuple(caps),
                start=li.start,
                end=li.end,
                campaign_start=camp.start,
                campaign_end=camp.end,
                budget_total=_f(li.budget_total),
                campaign_budget_total=_f(camp.budget_total),
                campaign_budget_daily=_f(camp.budget_daily),
                pacing_mode="asap" if li.pacing_mode == "asap" else "even",
                campaign_pacing_mode="asap" if camp.pacing_mode == "asap" else "even",
                timezone=camp.timezone or "UTC",
                dayparting=daypart,
            )
        )
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
