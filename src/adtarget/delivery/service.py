"""Delivery services: event intake, the store chosen by settings, and the spend feed.

Why here: the API route, the CLI import and the benchmark all take events the same way
(validate -> dedup -> append, with rejections by index), and the decision engine reads spend
through ``DeliverySpend`` without knowing which store holds it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

from adtarget.catalog.ownership import line_item_owners
from adtarget.delivery.models import MICROS, LineItemLookup, validate_events
from adtarget.delivery.reports import run_report
from adtarget.delivery.store import EventStore
from adtarget.errors import InvalidValue, StoreUnavailable
from adtarget.settings import Settings

log = logging.getLogger("adtarget.delivery")

__all__ = [
    "DeliverySpend",
    "IngestResult",
    "catalog_lookup",
    "ingest_events",
    "open_event_store",
    "run_report",
]


class IngestCounts(TypedDict):
    """``IngestResult`` as JSON (the events route's answer)."""

    accepted: int
    duplicates: int
    rejected: list[dict[str, Any]]


@dataclass
class IngestResult:
    """What happened to a batch: ``accepted + duplicates + len(rejected)`` = events sent."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> IngestCounts:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}

    def merge(self, other: IngestResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)


def ingest_events(
    *,
    store: EventStore,
    events: Sequence[Any] | Mapping[str, list[Any]],
    lookup: LineItemLookup | None = None,
    now: datetime | None = None,
    index_offset: int = 0,
) -> IngestResult:
    """Validate a batch, drop duplicates (in the batch and already stored), append the rest.

    Args:
        store: where events go.
        events: JSON-like event objects, or columns keyed by field name (file imports).
        lookup: catalog line-item resolver (see ``catalog_lookup``); ``None`` requires
            ``campaign_id`` and ``advertiser_id`` on every event.
        now: the clock, for the future / retention checks.
        index_offset: added to rejected indexes (row numbers across a file's batches).
    """
    batch = validate_events(
        events,
        lookup=lookup,
        now=now,
        retention_days=store.retention_days,
        index_offset=index_offset,
    )
    accepted = store.append(batch.table)
    return IngestResult(
        accepted=accepted,
        duplicates=batch.duplicates + batch.table.num_rows - accepted,
        rejected=batch.rejected,
    )


def open_event_store(settings: Settings, *, maintain: bool = True) -> EventStore:
    """The store named by ``settings.events_store`` (``parquet`` default, or ``postgres``).

    With ``maintain`` (the default), retention is applied on open, so a long-running server or
    a daily import keeps the log bounded without a separate cron job (``adtarget events prune``
    does the same on demand). PostgreSQL also creates day partitions a week ahead.
    """
    store: EventStore
    if settings.events_store == "postgres":
        from adtarget.delivery.postgres import PostgresEventStore

        url = settings.events_url or settings.catalog_url
        if not url or not url.startswith("postgres"):
            raise InvalidValue(
                "events_store=postgres needs ADTARGET_EVENTS_URL (postgresql://...)",
                field="events_url",
            )
        store = PostgresEventStore(
            url,
            retention_days=settings.events_retention_days,
            dedup_hours=settings.events_dedup_hours,
        )
    else:
        from adtarget.delivery.parquet_store import ParquetEventStore

        store = ParquetEventStore(
            settings.events_dir,
            retention_days=settings.events_retention_days,
            dedup_hours=settings.events_dedup_hours,
        )
    if maintain:
        store.apply_retention(retention_today())
    return store


def spend_totals_reader(settings: Settings) -> Callable[[], list[tuple[str, str, int]]]:
    """Delivered spend per (line item, campaign) in micros, read afresh at each call.

    For undo's "already served" note (``commands.delivery_check``), which is handed this reader
    instead of importing delivery. A data dir with no event log yet has served nothing, so the
    store is not created just to be asked.
    """

    def read() -> list[tuple[str, str, int]]:
        if settings.events_store == "parquet" and not settings.events_dir.exists():
            return []
        store = open_event_store(settings, maintain=False)
        try:
            return store.spend_totals()
        finally:
            store.close()

    return read


def catalog_lookup(session_factory: Callable[[], Any]) -> LineItemLookup:
    """Resolve line items to ``(campaign_id, advertiser_id)`` through the catalog."""

    def lookup(ids: Sequence[str]) -> Mapping[str, tuple[str, str]]:
        keys = [int(i) for i in ids if i.isdigit()]  # catalog ids are integers
        if not keys:
            return {}
        with session_factory() as session:
            owners = line_item_owners(session, keys)
        return {str(li): (str(camp), str(adv)) for li, (camp, adv) in owners.items()}

    return lookup


class DeliverySpend:
    """Delivered spend per line item / campaign for budgets and pacing; cheap per call.

    Answers from dicts. The first call loads them; afterwards, the first call after
    ``refresh_seconds`` starts a background reload and keeps answering from the previous figures
    (a decision never waits on the event store). If reloads keep failing for
    ``max_stale_seconds``, calls raise ``StoreUnavailable`` so budgets are not checked against
    old numbers (the decision engine then treats spend as down).
    """

    def __init__(
        self,
        store: EventStore,
        *,
        refresh_seconds: float = 2.0,
        max_stale_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self._store = store
        self._refresh = refresh_seconds
        self._max_stale = max_stale_seconds
        self._clock = clock
        self._background = background
        self._lock = threading.Lock()
        self._loading = False
        self._loaded_at: float | None = None
        self._li: dict[str, int] = {}
        self._camp: dict[str, int] = {}
        self._li_hours: dict[str, list[tuple[datetime, int]]] = {}
        self._camp_hours: dict[str, list[tuple[datetime, int]]] = {}

    def refresh(self) -> None:
        """Reload totals and the last two days by hour (enough for "today" in any time zone)."""
        since = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=50)
        li: dict[str, int] = {}
        camp: dict[str, int] = {}
        for line_item, campaign, micros in self._store.spend_totals():
            li[line_item] = li.get(line_item, 0) + int(micros)
            camp[campaign] = camp.get(campaign, 0) + int(micros)
        li_h: dict[str, list[tuple[datetime, int]]] = {}
        camp_h: dict[str, list[tuple[datetime, int]]] = {}
        for hour, line_item, campaign, micros in self._store.hourly_spend(since):
            li_h.setdefault(line_item, []).append((hour, int(micros)))
            camp_h.setdefault(campaign, []).append((hour, int(micros)))
        self._li, self._camp, self._li_hours, self._camp_hours = li, camp, li_h, camp_h
        self._loaded_at = self._clock()

    def _reload_in_background(self) -> None:
        try:
            self.refresh()
        except Exception:  # keep serving the last figures; _fresh() raises once too stale
            log.warning("delivery spend refresh failed", exc_info=True)
        finally:
            self._loading = False

    def _fresh(self) -> None:
        loaded = self._loaded_at
        if loaded is None:
            with self._lock:
                if self._loaded_at is None:
                    self.refresh()
            return
        age = self._clock() - loaded
        if age >= self._refresh and not self._loading:
            with self._lock:
                if self._loading:
                    return
                self._loading = True
            if self._background:
                threading.Thread(
                    target=self._reload_in_background, daemon=True, name="delivery-spend"
                ).start()
            else:
                self._reload_in_background()
        if self._clock() - (self._loaded_at or loaded) > self._max_stale:
            raise StoreUnavailable(
                f"delivery spend is {age:.0f} s old (limit {self._max_stale:.0f} s)",
                field="events_store",
            )

    def spend(self, line_item_id: str | int) -> float:
        """All-time delivered spend of a line item."""
        self._fresh()
        return self._li.get(str(line_item_id), 0) / MICROS

    def campaign_spend(self, campaign_id: str | int) -> float:
        """All-time delivered spend of a campaign."""
        self._fresh()
        return self._camp.get(str(campaign_id), 0) / MICROS

    @staticmethod
    def _today(hours: list[tuple[datetime, int]], tz: str, now: datetime | None) -> float:
        zone = ZoneInfo(tz)
        local = (now or datetime.now(UTC)).astimezone(zone)
        start = datetime.combine(local.date(), datetime.min.time(), zone).astimezone(UTC)
        # hourly rollups: an hour counts when it starts at/after local midnight (exact for
        # whole-hour offsets)
        return sum(m for h, m in hours if h >= start) / MICROS

    def campaign_spend_today(
        self, campaign_id: str | int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        """Spend of a campaign since local midnight in ``tz`` (daily pacing)."""
        self._fresh()
        return self._today(self._camp_hours.get(str(campaign_id), []), tz, now)

    def line_item_spend_today(
        self, line_item_id: str | int, tz: str = "UTC", now: datetime | None = None
    ) -> float:
        """Spend of a line item since local midnight in ``tz``."""
        self._fresh()
        return self._today(self._li_hours.get(str(line_item_id), []), tz, now)

    def spend_by_line_item(self) -> dict[str, float]:
        """All line items' all-time spend."""
        self._fresh()
        return {k: v / MICROS for k, v in self._li.items()}

    def spend_by_campaign(self) -> dict[str, float]:
        """All campaigns' all-time spend."""
        self._fresh()
        return {k: v / MICROS for k, v in self._camp.items()}


def retention_today() -> date:
    """Today in UTC, the reference day for ``EventStore.apply_retention``."""
    return datetime.now(UTC).date()
