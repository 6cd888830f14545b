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
import json
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Engine,
    Integer,
    Text,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from adtarget.catalog import live
from adtarget.catalog.changes import Change
from adtarget.catalog.driver_sql import DriverSelect
from adtarget.catalog.tables import (
    Advertiser,
    Campaign,
    CatalogChange,
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
        *live.LINE_ITEM_COLUMNS,
        # 13-14: the statuses
        LineItem.status,
        Campaign.status,
        # 15-29: ``live.live_campaigns``'s columns, in its order
        *live.CAMPAIGN_COLUMNS,
    )
    .join(Campaign, Campaign.id == LineItem.campaign_id)
    .join(Advertiser, Advertiser.id == Campaign.advertiser_id)
    .order_by(LineItem.id)
)
_CREATIVES = (
    select(*live.CREATIVE_COLUMNS)
    .join(Creative, live.SERVABLE_CREATIVE)
    .order_by(LineItemCreative.line_item_id, Creative.id)
)
_CHANGES = (
    select(CatalogChange.seq, CatalogChange.kind, CatalogChange.entity_id, CatalogChange.changed_at)
    .where(CatalogChange.seq > bindparam("floor", type_=BigInteger))
    .order_by(CatalogChange.seq)
    .limit(bindparam("limit", type_=Integer))
)
_SEGMENTS = select(
    Segment.name,
    Segment.kind,
    Segment.rule,
    cast(Segment.rule_json, Text),
    Segment.advertiser_id,
    Segment.last_size,
).order_by(Segment.name)


def _ids_in(column: Any, dialect: Dialect) -> Any:
    """``column`` among the ids bound as ``ids``, as one parameter whatever their number (the
    statement text never changes, so PostgreSQL prepares it once): an array on PostgreSQL, a
    JSON array read by ``json_each`` on SQLite (the catalog runs on one or the other)."""
    if dialect.name == "postgresql":
        return column == any_(bindparam("ids", type_=ARRAY(Integer)))
    ids: Any = select(literal_column("value")).select_from(func.json_each(bindparam("ids")))
    return column.in_(ids.scalar_subquery())


class _Statements:
    """The feed's and the patch's hot reads, compiled for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.array_ids = dialect.name == "postgresql"
        self.rows = DriverSelect(_ROWS.where(_ids_in(LineItem.id, dialect)), dialect)
        self.creatives = DriverSelect(
            _CREATIVES.where(_ids_in(LineItemCreative.line_item_id, dialect)), dialect
        )
        self.changes = DriverSelect(_CHANGES, dialect)

    def ids(self, wanted: list[int]) -> Any:
        return wanted if self.array_ids else json.dumps(wanted)


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
        self._sql = _Statements(engine.dialect)
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
        """Logged changes after ``floor``, oldest first (``changes.changes_after``'s read)."""
        with self._lock:
            rows = self._run(lambda conn: self._sql.changes.rows(conn, floor=floor, limit=limit))
        return [Change(int(s), str(k), int(e), float(t)) for s, k, e, t in rows]

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
        sql = self._sql

        def read(conn: Connection) -> PatchRows:
            segments = self._segments
            if segments is None or segments_changed:
                segments = SegmentRows(conn.execute(_SEGMENTS).all())
                self.segment_reads += 1
            ids = sql.ids(wanted)
            rows = sql.rows.rows(conn, ids=ids)
            creatives = sql.creatives.rows(conn, ids=ids)
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
            except Exception as exc:
                lost = self._lost(conn, exc)
                self._drop(invalidate=lost)  # a broken connection is not reused
                if lost and held is not None:
                    continue
                raise
            except BaseException:
                self._drop(invalidate=True)
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

    def _lost(self, conn: Connection, exc: Exception) -> bool:
        """Whether ``exc`` says the connection is gone (raised by SQLAlchemy, or by the driver
        under ``DriverSelect``)."""
        if isinstance(exc, DBAPIError):
            return bool(exc.connection_invalidated)
        dialect = self._engine.dialect
        if not isinstance(exc, dialect.loaded_dbapi.Error):
            return False
        try:
            driver = conn.connection.dbapi_connection
        except Exception:  # already invalidated
            return True
        return bool(dialect.is_disconnect(exc, driver, None))

    def _drop(self, *, invalidate: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to give back
                if invalidate:
                    conn.invalidate()  # not back to the pool: its reset would fail
                conn.close()
