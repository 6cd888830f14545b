"""The catalog change log: what was written, in order, for decision processes to patch from.

Why a table and not only notifications: triggers (migration 0002) append a row for every write
of an advertiser, campaign, line item, creative, creative link or segment; on PostgreSQL the
same transaction sends one ``NOTIFY adtarget_catalog``. A notification only says "look now";
the log says what changed, survives a dropped listener connection, and is the same on SQLite
(where nothing is pushed, and ``decision/change_feed.py`` polls it cheaply).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.orm import Session

from adtarget.catalog.tables import CatalogChange

CHANNEL = "adtarget_catalog"
"""The PostgreSQL ``LISTEN`` channel the triggers notify (one empty payload per transaction)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One logged write: ``kind`` (``line_item``, ``campaign``, ...) and the row's id."""

    seq: int
    kind: str
    entity_id: int
    changed_at: float


def latest_seq(session: Session) -> int:
    """The highest sequence number logged so far (0 for an empty log)."""
    return int(session.execute(select(func.max(CatalogChange.seq))).scalar() or 0)


def changes_after(
    session: Session | Connection, floor: int, *, limit: int = 10_000
) -> list[Change]:
    """Logged changes with ``seq > floor``, oldest first, at most ``limit`` (on a session or a
    plain connection: the change feed's, ``catalog/patch_reads.py``)."""
    rows = session.execute(
        select(
            CatalogChange.seq,
            CatalogChange.kind,
            CatalogChange.entity_id,
            CatalogChange.changed_at,
        )
        .where(CatalogChange.seq > floor)
        .order_by(CatalogChange.seq)
        .limit(limit)
    )
    return [Change(int(s), str(k), int(e), float(t)) for s, k, e, t in rows]


def prune_changes(session: Session, *, before: float) -> int:
    """Delete log rows written before ``before`` (epoch s); returns how many (caller commits)."""
    result = session.execute(delete(CatalogChange).where(CatalogChange.changed_at < before))
    return int(getattr(result, "rowcount", 0) or 0)
