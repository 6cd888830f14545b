"""What the decision side reads from the catalog, as small interfaces: one ``Protocol`` per role.

Why Protocols (the shape of Feast's per-role stores): the decision engine and its index holder
are handed a ``CatalogReader`` by the composition root and never see a session, a table or SQL;
a test or another backend can hand them anything with these methods. The SQL implementations
below delegate to the catalog's repository modules (``live.py``, ``upload_jobs.py``, the ad
formats of ``service.py``, and ``patch_reads.py`` for the change feed and each index patch), so
the queries exist once.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog import changes, live
from adtarget.catalog.changes import Change
from adtarget.catalog.patch_reads import PatchReads
from adtarget.catalog.service import ad_format_names
from adtarget.catalog.upload_jobs import latest_published_snapshot

__all__ = ["CatalogReader", "ChangeLog", "LiveCatalog", "SqlCatalogReader", "SqlLiveCatalog"]


class LiveCatalog(Protocol):
    """The rows one index rebuild reads, from one consistent view (column orders as in
    ``catalog/live.py``)."""

    def rule_segment_rows(self) -> list[tuple[str, str | None, str | None]]:
        """``(name, rule text, rule JSON as stored text)`` of every rule segment, by name."""
        ...

    def small_segments(self, min_size: int) -> dict[str, int]:
        """Segments whose last computed size is below ``min_size``."""
        ...

    def segment_owners(self) -> dict[str, int]:
        """Advertiser-owned segments -> their advertiser id (global segments are absent)."""
        ...

    def line_item_statuses(
        self, ids: Collection[int] | None = None
    ) -> list[tuple[int, str, int, str]]:
        """``(line item id, status, campaign id, campaign status)`` of every line item (or of
        the line items ``ids``: an index patch)."""
        ...

    def live_rows(self, ids: Collection[int] | None = None) -> Sequence[Any]:
        """One row per line item whose line item and campaign are both active."""
        ...

    def live_campaigns(
        self, campaign_ids: Collection[int] | None = None
    ) -> dict[int, tuple[Any, ...]]:
        """Active campaigns with their advertiser's caps, by id."""
        ...

    def live_creatives(
        self, ids: Collection[int] | None = None
    ) -> dict[int, list[tuple[int, str, str | None]]]:
        """``(creative id, format, attributes JSON text)`` of approved, active creatives per
        active line item."""
        ...


class CatalogReader(Protocol):
    """The catalog as the decision engine needs it; each call opens what it needs."""

    def live(self) -> AbstractContextManager[LiveCatalog]:
        """A consistent ``LiveCatalog`` for one rebuild (``with reader.live() as rows:``)."""
        ...

    def marker(self) -> Hashable:
        """A cheap fingerprint that changes whenever the live set may have changed."""
        ...

    def format_names(self) -> frozenset[str]:
        """The names in the ad-format registry."""
        ...

    def published_snapshot(self) -> str | None:
        """The snapshot the newest succeeded upload published, or ``None``."""
        ...


class ChangeLog(Protocol):
    """The catalog's change log (``catalog/changes.py``), for index patching."""

    @property
    def url(self) -> URL | None:
        """The database URL (``LISTEN`` on PostgreSQL, ``PRAGMA data_version`` on SQLite)."""
        ...

    def latest_change(self) -> int:
        """The newest sequence number in the log."""
        ...

    def changes_after(self, floor: int, limit: int) -> list[Change]:
        """Logged changes after ``floor``, oldest first."""
        ...

    def affected_line_items(
        self, writes: Collection[tuple[str, int]], at_most: int
    ) -> set[int] | None:
        """The line items ``(kind, id)`` writes can change (``None``: more than ``at_most``)."""
        ...

    def patch_rows(self, ids: Collection[int], *, segments_changed: bool) -> LiveCatalog:
        """The rows of line items ``ids`` for an index patch (``load_catalog(..., ids=ids)``);
        ``segments_changed``: the changes touched a segment, so read the segments again."""
        ...

    def forget_segments(self) -> None:
        """A full rebuild read the catalog: the next patch reads the segments again."""
        ...


class SqlLiveCatalog:
    """``LiveCatalog`` over one catalog session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def rule_segment_rows(self) -> list[tuple[str, str | None, str | None]]:
        return live.rule_segment_rows(self._session)

    def small_segments(self, min_size: int) -> dict[str, int]:
        return live.small_segments(self._session, min_size)

    def segment_owners(self) -> dict[str, int]:
        return live.segment_owners(self._session)

    def line_item_statuses(
        self, ids: Collection[int] | None = None
    ) -> list[tuple[int, str, int, str]]:
        return live.line_item_statuses(self._session, ids)

    def live_rows(self, ids: Collection[int] | None = None) -> Sequence[Any]:
        return live.live_rows(self._session, ids)

    def live_campaigns(
        self, campaign_ids: Collection[int] | None = None
    ) -> dict[int, tuple[Any, ...]]:
        return live.live_campaigns(self._session, campaign_ids)

    def live_creatives(
        self, ids: Collection[int] | None = None
    ) -> dict[int, list[tuple[int, str, str | None]]]:
        return live.live_creatives(self._session, ids)


class SqlCatalogReader:
    """``CatalogReader`` and ``ChangeLog`` over a session factory (one session per call)."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._factory = session_factory
        self._patch_reads: PatchReads | None = None

    @property
    def patch_reads(self) -> PatchReads:
        """The change feed's and the patches' reader (one held connection), made on first use
        (in the serving process, not before a fork)."""
        reads = self._patch_reads
        if reads is None:
            bind = self._factory.kw.get("bind")
            if bind is None:
                raise RuntimeError("the catalog's session factory has no engine bound")
            reads = self._patch_reads = PatchReads(bind)
        return reads

    @contextmanager
    def live(self) -> Iterator[SqlLiveCatalog]:
        with self._factory() as session:
            yield SqlLiveCatalog(session)

    def marker(self) -> Hashable:
        with self._factory() as session:
            return live.catalog_marker(session)

    def format_names(self) -> frozenset[str]:
        with self._factory() as session:
            return ad_format_names(session=session)

    def published_snapshot(self) -> str | None:
        with self._factory() as session:
            return latest_published_snapshot(session=session)

    @property
    def url(self) -> URL | None:
        bind = self._factory.kw.get("bind")
        return getattr(bind, "url", None)

    def latest_change(self) -> int:
        with self._factory() as session:
            return changes.latest_seq(session)

    def changes_after(self, floor: int, limit: int) -> list[Change]:
        return self.patch_reads.changes_after(floor, limit)

    def affected_line_items(
        self, writes: Collection[tuple[str, int]], at_most: int
    ) -> set[int] | None:
        return self.patch_reads.affected_line_items(writes, at_most)

    def patch_rows(self, ids: Collection[int], *, segments_changed: bool) -> LiveCatalog:
        return self.patch_reads.rows(ids, segments_changed=segments_changed)

    def forget_segments(self) -> None:
        if self._patch_reads is not None:
            self._patch_reads.forget_segments()
