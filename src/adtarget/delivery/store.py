"""The ``EventStore`` role: an append-only, deduplicating event log with hourly rollups.

Why a Protocol: the Parquet log in the data dir (``parquet_store.py``) and PostgreSQL
partitioned tables (``postgres.py``) must be interchangeable under intake, reports and the
spend feed; the contract tests in ``tests/delivery/test_store_contract.py`` run against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class ReportQuery:
    """A validated report request: UTC hour-aligned ``[start, end)``, canonical names."""

    start: datetime
    end: datetime
    group_by: tuple[str, ...]
    counters: tuple[str, ...]
    reach: bool
    advertiser_id: str | None = None


class EventStore(Protocol):
    """Storage for delivery events; every method is safe to call from several threads."""

    retention_days: int

    def append(self, events: pa.Table) -> int:
        """Store the events whose ``(day, event_id)`` was never seen; return how many.

        ``events`` follows ``models.EVENT_SCHEMA`` and has no duplicate keys within itself.
        The rollups are updated in the same unit of work, so they never drift from the log.
        """
        ...

    def query_report(self, query: ReportQuery) -> list[dict[str, Any]]:
        """Group keys, the summed counters (``spend_micros`` for spend) and ``reach``."""
        ...

    def rollups(self) -> pa.Table:
        """The whole hourly rollup table (``rollup.ROLLUP_SCHEMA``), for audits and tests."""
        ...

    def rebuild_rollups(self) -> None:
        """Recompute the rollups from the raw log, replacing the incremental ones."""
        ...

    def scan(self, start_day: date | None = None, end_day: date | None = None) -> pa.Table:
        """Raw events with ``start_day <= day <= end_day`` (all when unbounded)."""
        ...

    def spend_totals(self) -> list[tuple[str, str, int]]:
        """All-time ``(line_item_id, campaign_id, spend_micros)``."""
        ...

    def hourly_spend(self, since: datetime) -> list[tuple[datetime, str, str, int]]:
        """``(hour, line_item_id, campaign_id, spend_micros)`` for hours ``>= since``."""
        ...

    def apply_retention(self, today: date) -> list[date]:
        """Drop days older than ``today - retention_days`` (log, dedup index, rollups)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
