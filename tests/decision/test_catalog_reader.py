"""The decision index reads the catalog only through ``catalog.repo.CatalogReader``.

A reader that is not SQL at all (rows held in memory, in the column order of
``catalog/live.py``) builds the same kind of index: the engine's view of the catalog is the
Protocol, not a session.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from adtarget.catalog.repo import CatalogReader, LiveCatalog
from adtarget.decision.index_holder import IndexHolder
from adtarget.decision.loader import load_catalog

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2027, 1, 1, tzinfo=UTC)


class MemoryLiveCatalog:
    """Two active line items of one campaign (one without a creative) and a paused one."""

    def rule_segment_rows(self) -> list[tuple[str, str | None, str | None]]:
        return [("fans", 'genres has any ("scifi")', None)]

    def small_segments(self, min_size: int) -> dict[str, int]:
        return {}

    def segment_owners(self) -> dict[str, int]:
        return {}

    def line_item_statuses(self) -> list[tuple[int, str, int, str]]:
        return [
            (1, "active", 10, "active"),
            (2, "active", 10, "active"),
            (3, "paused", 10, "active"),
        ]

    def live_rows(self) -> Sequence[Any]:
        def row(li: int, targeting: str) -> tuple[Any, ...]:
            return (li, 2, Decimal("4.5"), json.dumps(["video_15s"]), None, None, None, "even",
                    None, None, targeting, None, 10)  # fmt: skip

        return [row(1, 'country = "US" and segment("fans")'), row(2, 'country = "US"')]

    def live_campaigns(self) -> dict[int, tuple[Any, ...]]:
        return {
            10: (
                10,
                T0,
                T1,
                Decimal(1000),
                None,
                "even",
                "UTC",
                None,
                3,
                3600,
                7,
                None,
                None,
                None,
                "auto",
            )  # fmt: skip
        }

    def live_creatives(self) -> dict[int, list[tuple[int, str, str | None]]]:
        return {1: [(100, "video_15s", '{"duration": 15}')]}


class MemoryCatalog:
    def __init__(self) -> None:
        self.version = 1

    @contextmanager
    def live(self) -> Iterator[LiveCatalog]:
        yield MemoryLiveCatalog()

    def marker(self) -> Hashable:
        return self.version

    def format_names(self) -> frozenset[str]:
        return frozenset({"video_15s"})

    def published_snapshot(self) -> str | None:
        return None


def test_the_index_holder_builds_from_any_catalog_reader() -> None:
    catalog: CatalogReader = MemoryCatalog()
    holder = IndexHolder.from_catalog(catalog)
    index = holder.refresh()
    # the rule segment was inlined; line item 2 has no creative, 3 is paused
    assert index.match_ids({"country": "US", "genres": frozenset({"scifi"})}) == {1}
    assert index.match_ids({"country": "US", "genres": frozenset({"drama"})}) == set()


def test_the_loader_says_why_the_others_are_not_live() -> None:
    loaded = load_catalog(MemoryLiveCatalog())
    (item,) = loaded.items
    assert (item.id, item.campaign_id, item.advertiser_id, item.bid_cpm) == (1, 10, 7, 4.5)
    assert [c.level for c in item.caps] == ["campaign"]
    assert {li: reason for li, reason, _ in loaded.not_live} == {2: "no_creative", 3: "status"}
