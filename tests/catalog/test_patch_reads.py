"""An index patch's reads (``catalog/patch_reads.py``) give the loader exactly what the
rebuild's reads give it for the same line items, on SQLite and on real PostgreSQL; the segments
are read again only when a change touched one (or after a rebuild); a held connection the
server closed is replaced without failing the patch."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from itertools import combinations
from typing import Any

import pytest
from sqlalchemy import Engine, text, update
from sqlalchemy.orm import Session

from adtarget.catalog.patch_reads import PatchReads
from adtarget.catalog.repo import SqlLiveCatalog
from adtarget.catalog.tables import (
    Advertiser,
    Campaign,
    Creative,
    LineItem,
    LineItemCreative,
    Segment,
)
from adtarget.decision.loader import load_catalog

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2099, 1, 1, tzinfo=UTC)
MIN_SIZE = 100


def _catalog(s: Session) -> list[int]:
    """Line items in every state the loader tells apart; returns their ids."""
    a = Advertiser(name="a", frequency_cap_count=5, frequency_cap_window_seconds=3600)
    b = Advertiser(name="b", category="auto")
    s.add_all([a, b])
    s.flush()
    live = Campaign(
        advertiser_id=a.id, name="live", status="active", budget_total=Decimal("100.50"),
        budget_daily=Decimal("10"), start=T0, end=T1, dayparting={"mon": [9, 10]},
        frequency_cap_count=2, frequency_cap_window_seconds=60, category="finance",
        timezone="Europe/Paris",
    )  # fmt: skip
    paused = Campaign(
        advertiser_id=b.id, name="paused", status="paused", budget_total=Decimal(5),
        start=T0, end=T1,
    )  # fmt: skip
    other = Campaign(
        advertiser_id=b.id, name="b-live", status="active", budget_total=Decimal(7),
        start=T0, end=T1,
    )  # fmt: skip
    s.add_all([live, paused, other])
    s.flush()
    s.add_all(
        [
            Segment(name="fans", kind="rule", rule='country = "US"'),
            Segment(name="b_list", kind="list", advertiser_id=b.id, last_size=5000),
            Segment(name="tiny", kind="list", last_size=5),
            Segment(name="big", kind="list", last_size=5000),
        ]
    )
    ok = Creative(advertiser_id=a.id, name="ok", format="video_30s", attributes={"duration": 30})
    pending = Creative(
        advertiser_id=a.id, name="pending", format="video_30s", approval_status="pending"
    )
    off = Creative(advertiser_id=a.id, name="off", format="video_30s", status="paused")
    banner = Creative(advertiser_id=b.id, name="banner", format="display_banner")
    s.add_all([ok, pending, off, banner])
    s.flush()

    names = iter(range(100))

    def li(camp: Campaign, targeting: str | None, *creatives: Creative, **kw: Any) -> int:
        item = LineItem(
            campaign_id=camp.id, name=f"li{next(names)}", status=kw.pop("status", "active"),
            bid_cpm=Decimal("2.75"), targeting=targeting, **kw,
        )  # fmt: skip
        s.add(item)
        s.flush()
        s.add_all(LineItemCreative(line_item_id=item.id, creative_id=c.id) for c in creatives)
        return item.id

    ids = [
        li(live, 'segment("fans") and segment("big")', ok, pending, off,
           frequency_cap_count=1, frequency_cap_window_seconds=30, start=T0,
           budget_total=Decimal("9.99"), formats=["video_30s"]),
        li(live, 'country = "CA"', pending),  # no approved, active creative
        li(live, None, ok, status="paused"),
        li(paused, None, banner),  # its campaign is paused
        li(live, 'segment("b_list")', ok),  # another advertiser's segment
        li(live, 'segment("tiny")', ok),  # below the minimum audience size
        li(other, 'segment("b_list")', banner, formats=["video_30s"]),  # no creative in formats
        li(other, "country = ", banner),  # unreadable targeting
        li(other, 'not segment("fans")', banner),
    ]  # fmt: skip
    s.commit()
    return ids


def _rebuild_reads(engine: Engine, ids: list[int]) -> Any:
    with Session(engine) as s:
        return load_catalog(SqlLiveCatalog(s), min_segment_size=MIN_SIZE, ids=ids)


def test_a_patch_loads_what_the_rebuild_loads(engine: Engine) -> None:
    with Session(engine) as s:
        ids = _catalog(s)
    reads = PatchReads(engine)
    try:
        subsets = [ids, *([i] for i in ids), *map(list, combinations(ids[:5], 2)), [10**6]]
        for wanted in subsets:
            patch = load_catalog(
                reads.rows(wanted, segments_changed=False), min_segment_size=MIN_SIZE, ids=wanted
            )
            rebuild = _rebuild_reads(engine, wanted)
            assert patch.items == rebuild.items, wanted
            assert patch.not_live == rebuild.not_live, wanted
        everything = load_catalog(
            reads.rows(ids, segments_changed=False), min_segment_size=MIN_SIZE
        )
        reasons = {li_id: reason for li_id, reason, _ in everything.not_live}
        assert [it.id for it in everything.items] == [ids[0], ids[8]]
        assert reasons == {
            ids[1]: "no_creative",
            ids[2]: "status",
            ids[3]: "status",
            ids[4]: "foreign_segment",
            ids[5]: "segment_below_minimum",
            ids[6]: "no_creative",
            ids[7]: "invalid",
        }
        assert reads.segment_reads == 1  # read once, kept across the patches
    finally:
        reads.close()


def test_segments_are_read_again_only_when_changed_or_forgotten(engine: Engine) -> None:
    with Session(engine) as s:
        ids = _catalog(s)
    reads = PatchReads(engine)

    def fans() -> str | None:
        rows = reads.rows([ids[0]], segments_changed=False).rule_segment_rows()
        return {name: rule for name, rule, _ in rows}["fans"]

    try:
        assert fans() == 'country = "US"'
        with Session(engine) as s, s.begin():
            s.execute(update(Segment).where(Segment.name == "fans").values(rule='country = "CA"'))
        assert fans() == 'country = "US"'  # no segment change delivered: kept
        assert reads.segment_reads == 1
        changed = reads.rows([ids[0]], segments_changed=True).rule_segment_rows()
        assert {name: rule for name, rule, _ in changed} == {"fans": 'country = "CA"'}
        assert fans() == 'country = "CA"'
        with Session(engine) as s, s.begin():
            s.execute(update(Segment).where(Segment.name == "fans").values(rule='country = "FR"'))
        reads.forget_segments()  # what a full rebuild does
        assert fans() == 'country = "FR"'
        assert reads.segment_reads == 3
    finally:
        reads.close()


def test_line_item_writes_need_no_query_others_are_looked_up(engine: Engine) -> None:
    with Session(engine) as s:
        ids = _catalog(s)
        camp = s.get(LineItem, ids[0]).campaign_id  # type: ignore[union-attr]
    reads = PatchReads(engine)
    try:
        assert reads.affected_line_items({("line_item", 5), ("line_item", 7)}, 1) == {5, 7}
        found = reads.affected_line_items({("campaign", camp)}, 100)
        assert found == {ids[0], ids[1], ids[2], ids[4], ids[5]}
        assert reads.affected_line_items({("campaign", camp)}, 2) is None
    finally:
        reads.close()


@pytest.mark.postgres
def test_a_held_connection_closed_by_the_server_is_replaced(pg_url: str) -> None:
    from adtarget.catalog.db import make_engine, migrate

    migrate(pg_url)
    engine = make_engine(pg_url)
    try:
        with Session(engine) as s:
            ids = _catalog(s)
        reads = PatchReads(engine)
        first = reads.rows(ids, segments_changed=False)
        with engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        assert killed and killed >= 1
        again = reads.rows(ids, segments_changed=False)  # no error: reconnected once
        assert again.line_item_statuses() == first.line_item_statuses()
        assert reads.changes_after(0, 5)  # the change feed's read goes through it too
        reads.close()
    finally:
        engine.dispose()
