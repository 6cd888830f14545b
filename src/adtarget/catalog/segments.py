"""The segment repository: what other packages read and write of the ``segments`` table.

Uploads materialize list segments and refresh every segment's size; the API asks which segment
names a caller may see and who owns one. Each is one function here, so no other package builds
SQL against the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from adtarget.catalog.tables import Segment
from adtarget.errors import Conflict

__all__ = [
    "SegmentDef",
    "SegmentScope",
    "active_segments",
    "all_segment_scopes",
    "ensure_list_segment",
    "foreign_segment_names",
    "record_sizes",
    "rule_segment_texts",
    "segment_owner",
    "segment_ttl",
    "usable_segment_names",
]


@dataclass(frozen=True)
class SegmentDef:
    """A segment's definition: its name, ``list`` or ``rule``, and the rule text if any."""

    name: str
    kind: str
    rule: str | None


def active_segments(session: Session) -> list[SegmentDef]:
    """Every segment not archived."""
    rows = session.execute(
        select(Segment.name, Segment.kind, Segment.rule).where(Segment.status != "archived")
    )
    return [SegmentDef(name, kind, rule) for name, kind, rule in rows]


@dataclass(frozen=True)
class SegmentScope:
    """A segment as rule validation sees it: definition, owner and whether it is archived."""

    name: str
    kind: str
    rule: str | None
    advertiser_id: int | None
    archived: bool


def all_segment_scopes(session: Session) -> list[SegmentScope]:
    """Every segment, archived ones too (another advertiser's archived segment stays hidden)."""
    rows = session.execute(
        select(Segment.name, Segment.kind, Segment.rule, Segment.advertiser_id, Segment.status)
    )
    return [SegmentScope(n, k, r, a, status == "archived") for n, k, r, a, status in rows]


def rule_segment_texts(session: Session) -> list[tuple[str, str]]:
    """The active rule segments as (name, rule text)."""
    rows = session.execute(
        select(Segment.name, Segment.rule).where(
            Segment.kind == "rule", Segment.status != "archived"
        )
    )
    return [(name, rule) for name, rule in rows if rule]


def record_sizes(
    session: Session, sizes: Mapping[str, int], *, snapshot: str, at: datetime
) -> None:
    """Store each named segment's size on ``snapshot`` (derived data: not a command's change)."""
    if not sizes:
        return
    for seg in session.scalars(select(Segment).where(Segment.name.in_(list(sizes)))):
        seg.last_size, seg.last_snapshot, seg.last_computed_at = sizes[seg.name], snapshot, at


def ensure_list_segment(session: Session, name: str, *, ttl_seconds: int | None) -> None:
    """Create the list segment ``name`` or refresh its TTL; ``Conflict`` if it is a rule."""
    seg = session.scalar(select(Segment).where(Segment.name == name))
    if seg is None:
        session.add(Segment(name=name, kind="list", ttl_seconds=ttl_seconds, status="active"))
    elif seg.kind != "list":
        raise Conflict(f"segment {name!r} is a rule segment, not a list", field="segment")
    elif ttl_seconds is not None:
        seg.ttl_seconds = ttl_seconds
    session.flush()


def segment_ttl(session: Session, name: str | None) -> int | None:
    """The segment's own ``ttl_seconds`` (``None`` when unset or no such segment)."""
    return session.scalar(select(Segment.ttl_seconds).where(Segment.name == name))


def usable_segment_names(session: Session, *, scoped: bool, advertiser_id: int | None) -> list[str]:
    """Names of the segments not archived that a caller may use in a rule.

    ``scoped`` (advertiser keys): the global segments plus ``advertiser_id``'s own, so one
    advertiser never learns another's private segment names; with ``advertiser_id=None`` only
    the global ones. Unscoped (admin, reader): every one.
    """
    stmt = select(Segment.name).where(Segment.status != "archived")
    if scoped and advertiser_id is None:
        stmt = stmt.where(Segment.advertiser_id.is_(None))
    elif scoped:
        stmt = stmt.where(
            (Segment.advertiser_id == advertiser_id) | (Segment.advertiser_id.is_(None))
        )
    return list(session.scalars(stmt))


def foreign_segment_names(session: Session, *, advertiser_id: int | None) -> frozenset[str]:
    """Names of the segments owned by advertisers other than ``advertiser_id``."""
    rows = session.scalars(
        select(Segment.name).where(
            Segment.advertiser_id.is_not(None), Segment.advertiser_id != advertiser_id
        )
    )
    return frozenset(rows)


def segment_owner(session: Session, segment_id: int) -> int | None:
    """The advertiser owning segment ``segment_id`` (``None``: global, or no such segment)."""
    return session.scalar(select(Segment.advertiser_id).where(Segment.id == segment_id))
