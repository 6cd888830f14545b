"""What one index patch reads, in two statements on one held connection.

Why its own reader: every decision worker runs a patch for every catalog change, in its
change-feed thread, holding the GIL between round trips while its event loop waits. Through the
rebuild's path a patch was a new ORM session per read (a pool checkout, on PostgreSQL a
pre-ping round trip), four queries for the changed line items (live rows, campaigns, creatives,
statuses) and two whole-table segment reads per change. Here a patch is: one statement for the
line items with their campaign and advertiser columns (statuses and live rows come from the
same rows), one for their creatives, both built once (the ids an expanding parameter, so the
compiled form is reused), executed on a Core connection (no ORM layer), and the segments only
when a change touched a segment (or after a full rebuild, ``forget_segments``). The columns
and their types are the rebuild's (``catalog/live.py``), so a patched line item equals a
rebuilt one.

Why the segments can be kept between patches: every write of a segment row is in the change
log (migration 0002's triggers, any column), so a batch without a ``segment`` change leaves
the segments as last read; the few changes given up on by the feed (a transaction open longer
than its gap wait) are what the holder's periodic rebuild covers, and it resets them here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Text, and_, bindparam, cast, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from adtarget.catalog import changes, live
from adtarget.catalog.changes import Change
from adtarget.catalog.tables import (
    Advertiser,
    Campaign,
    Creative,
    LineItem,
    LineItemCreative,
    Segment,
)

__all__ = ["PatchReads", "PatchRows", "SegmentRows"]

T = TypeVar("T")

_ROWS = (
    select(
        # 0-12: ``live.live_rows``'s columns, in its order
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
        # 13-14: the statuses
        LineItem.status,
        Campaign.status,
        # 15-29: ``live.live_campaigns``'s columns, in its order
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
    .join(Campaign, Campaign.id == LineItem.campaign_id)
    .join(Advertiser, Advertiser.id == Campaign.advertiser_id)
    .where(LineItem.id.in_(bindparam("ids", expanding=True)))
    .order_by(LineItem.id)
)
_CREATIVES = (
    select(
        LineItemCreative.line_item_id,
        Creative.id,
        Creative.format,
        cast(Creative.attributes, Text),
    )
    .join(
        Creative,
        and_(
            Creative.id == LineItemCreative.creative_id,
            Creative.status == "active",
            Creative.approval_status == "approved",
        ),
    )
    .where(LineItemCreative.line_item_id.in_(bindparam("ids", expanding=True)))
    .order_by(LineItemCreative.line_item_id, Creative.id)
)
_SEGMENTS = select(
    Segment.name,
    Segment.kind,
    Segment.rule,
    cast(Segment.rule_json, Text),
    Segment.advertiser_id,
    Segment.last_size,
).order_by(Segment.name)


class SegmentRows:
    """The segments table as the loader reads it (rule rows, owners, sizes), from one read."""

    __slots__ = ("owners", "rules", "sizes")

    def __init__(self, rows: Sequence[Sequence[Any]]) -> None:
        self.rules: list[tuple[str, str | None, str | None]] = [
            (name, rule, js) for name, kind, rule, js, _, _ in rows if kind == "rule"
        ]
        self.owners: dict[str, int] = {
            name: int(owner) for name, _, _, _, owner, _ in rows if owner is not None
        }
        self.sizes: list[tuple[str, int]] = [
            (name, int(size)) for name, _, _, _, _, size in rows if size is not None
        ]


class PatchRows:
    """``LiveCatalog`` for the line items of one patch (every method answers for those ids;
    the ``ids`` arguments the loader passes are the same ones)."""

    def __init__(
        self,
        rows: Sequence[Sequence[Any]],
        creatives: Sequence[Sequence[Any]],
        segments: SegmentRows,
    ) -> None:
        self._segments = segments
        self._statuses = [(r[0], r[13], r[12], r[14]) for r in rows]
        live_rows = [r for r in rows if r[13] == "active" and r[14] == "active"]
        self._live = [tuple(r[:13]) for r in live_rows]
        self._campaigns = {r[15]: tuple(r[15:30]) for r in live_rows}
        live_ids = {r[0] for r in live_rows}
        out: dict[int, list[tuple[int, str, str | None]]] = {}
        for li_id, creative_id, fmt, attributes in creatives:
            if li_id in live_ids:
                out.setdefault(li_id, []).append((creative_id, fmt, attributes))
        self._creatives = out

    def rule_segment_rows(self) -> list[tuple[str, str | None, str | None]]:
        return self._segments.rules

    def small_segments(self, min_size: int) -> dict[str, int]:
        return {name: size for name, size in self._segments.sizes if size < min_size}

    def segment_owners(self) -> dict[str, int]:
        return self._segments.owners

    def line_item_statuses(
        self, ids: Collection[int] | None = None
    ) -> list[tuple[int, str, int, str]]:
        return self._statuses

    def live_rows(self, ids: Collection[int] | None = None) -> Sequence[Any]:
        return self._live

    def live_campaigns(
        self, campaign_ids: Collection[int] | None = None
    ) -> dict[int, tuple[Any, ...]]:
        return self._campaigns

    def live_creatives(
        self, ids: Collection[int] | None = None
    ) -> dict[int, list[tuple[int, str, str | None]]]:
        return self._creatives


class PatchReads:
    """The reads of the change feed and of each patch, on one connection held between them.

    Thread-safe (one lock): the feed's thread and the holder's rebuild thread both patch.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # in-memory SQLite shares one connection between everyone: never hold it
        self._hold = not isinstance(engine.pool, StaticPool)
        self._conn: Connection | None = None
        self._segments: SegmentRows | None = None
        self._lock = threading.Lock()
        self.segment_reads = 0

    def forget_segments(self) -> None:
        """Read the segments again at the next patch (after a full rebuild read them); waits
        for a read under way, so that it cannot keep what it read over this."""
        with self._lock:
            self._segments = None

    def close(self) -> None:
        """Give the held connection back."""
        with self._lock:
            self._drop()

    def changes_after(self, floor: int, limit: int) -> list[Change]:
        """``changes.changes_after`` on the held connection."""
        with self._lock:
            return self._run(lambda conn: changes.changes_after(conn, floor, limit=limit))

    def affected_line_items(
        self, writes: Collection[tuple[str, int]], at_most: int
    ) -> set[int] | None:
        """``live.affected_line_items`` on the held connection (no query for line items)."""
        if all(kind == "line_item" for kind, _ in writes):
            return {entity_id for _, entity_id in writes}
        with self._lock:
            return self._run(lambda conn: live.affected_line_items(conn, writes, at_most=at_most))

    def rows(self, ids: Collection[int], *, segments_changed: bool) -> PatchRows:
        """The rows of line items ``ids`` (two statements; the segments when changed or not
        yet read)."""
        wanted = sorted(ids)

        def read(conn: Connection) -> PatchRows:
            segments = self._segments
            if segments is None or segments_changed:
                segments = SegmentRows(conn.execute(_SEGMENTS).all())
                self.segment_reads += 1
            rows = conn.execute(_ROWS, {"ids": wanted}).all()
            creatives = conn.execute(_CREATIVES, {"ids": wanted}).all()
            self._segments = segments  # kept only once the whole read succeeded
            return PatchRows(rows, creatives, segments)

        with self._lock:
            return self._run(read)

    def _run(self, work: Callable[[Connection], T]) -> T:
        """``work`` on the held connection (opened when none is), then end its transaction;
        a held connection the server closed meanwhile is replaced once (what the pool's
        pre-ping did at each checkout, without its round trip per read)."""
        while True:
            held = self._conn
            conn = held if held is not None else self._connect()
            self._conn = conn
            try:
                result = work(conn)
                conn.rollback()  # ends SQLAlchemy's own transaction (none at the driver)
            except DBAPIError as exc:
                self._drop()  # a broken connection is not reused
                if held is not None and exc.connection_invalidated:
                    continue
                raise
            except BaseException:
                self._drop()
                raise
            if not self._hold:
                self._drop()
            return result

    def _connect(self) -> Connection:
        """A connection in autocommit: no ``BEGIN`` / ``ROLLBACK`` round trips around each read
        on PostgreSQL (each statement sees its own snapshot there either way, READ COMMITTED);
        the loader already takes a campaign that changed between two statements for not live,
        and the change log brings that change next."""
        return self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to give back
                conn.close()
