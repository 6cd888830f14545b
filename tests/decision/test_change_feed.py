"""The catalog change log and the index patched from it: every write is logged by triggers, the
feed delivers each change once (also when PostgreSQL commits sequence numbers out of order), a
started holder serves a pause within moments without rebuilding, and the periodic agreement
check notices a change the patches missed and heals it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, text
from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog.changes import Change, changes_after, latest_seq
from adtarget.catalog.repo import SqlCatalogReader
from adtarget.catalog.tables import (
    Advertiser,
    Campaign,
    CatalogChange,
    Creative,
    LineItem,
    LineItemCreative,
)
from adtarget.decision.change_feed import ChangeFeed
from adtarget.decision.index_holder import IndexHolder


def _live_item(s: Session, targeting: str = 'country = "US"') -> dict[str, int]:
    adv = Advertiser(name=f"a{time.monotonic_ns()}")
    s.add(adv)
    s.flush()
    now = datetime.now(UTC)
    camp = Campaign(
        advertiser_id=adv.id,
        name="c",
        status="active",
        budget_total=Decimal("100"),
        start=now - timedelta(days=1),
        end=now + timedelta(days=30),
    )
    s.add(camp)
    s.flush()
    li = LineItem(
        campaign_id=camp.id, name="li", status="active", bid_cpm=Decimal("2"), targeting=targeting
    )
    cr = Creative(advertiser_id=adv.id, name="v", format="video_30s")
    s.add_all([li, cr])
    s.flush()
    s.add(LineItemCreative(line_item_id=li.id, creative_id=cr.id))
    s.commit()
    return {"adv": adv.id, "camp": camp.id, "li": li.id, "cr": cr.id}


def test_triggers_log_every_write(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        floor = latest_seq(s)
        ids = _live_item(s)
        s.execute(text("UPDATE campaigns SET name = 'raw' WHERE id = :i"), {"i": ids["camp"]})
        s.execute(delete(LineItemCreative).where(LineItemCreative.line_item_id == ids["li"]))
        s.commit()
        logged = {(c.kind, c.entity_id) for c in changes_after(s, floor)}
    assert logged == {
        ("advertiser", ids["adv"]),
        ("campaign", ids["camp"]),
        ("line_item", ids["li"]),  # the line item itself and its creative link, both ways
        ("creative", ids["cr"]),
    }


def test_feed_delivers_each_change_once(factory: sessionmaker[Session]) -> None:
    got: list[Change] = []
    feed = ChangeFeed(SqlCatalogReader(factory), got.extend)
    with factory() as s:
        feed.reset(latest_seq(s))
        _live_item(s)
    assert feed.poll_once() == len(got) > 0
    assert feed.poll_once() == 0  # nothing new: nothing delivered twice
    assert sorted(c.seq for c in got) == [c.seq for c in got]


def test_postgres_commits_out_of_order_are_not_lost(pg_url: str) -> None:
    from adtarget.catalog.db import make_engine, make_session_factory, migrate

    engine = make_engine(pg_url)
    migrate(pg_url, engine=engine)
    factory = make_session_factory(engine)
    with factory() as s:
        ids = _live_item(s)
    got: list[Change] = []
    feed = ChangeFeed(SqlCatalogReader(factory), got.extend)
    with factory() as s:
        feed.reset(latest_seq(s))
    slow, fast = factory(), factory()
    try:
        slow.execute(text("UPDATE line_items SET bid_cpm = 3 WHERE id = :i"), {"i": ids["li"]})
        fast.execute(text("UPDATE advertisers SET name = 'later' WHERE id = :i"), {"i": ids["adv"]})
        fast.commit()  # a higher sequence number becomes visible first
        feed.poll_once()
        assert [c.kind for c in got] == ["advertiser"]
        slow.commit()  # the lower number commits afterwards: still delivered
        feed.poll_once()
        assert sorted(c.kind for c in got) == ["advertiser", "line_item"]
    finally:
        slow.close()
        fast.close()
        engine.dispose()


def test_started_holder_serves_a_pause_at_once_without_rebuilding(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s:
        ids = _live_item(s)
    holder = IndexHolder.from_session_factory(factory, poll_seconds=30.0, check_seconds=3600.0)
    holder.start()
    try:
        assert holder.current().match_ids({"country": "US"}) == {ids["li"]}
        generation = holder.generation
        with factory() as s:
            s.execute(
                text("UPDATE line_items SET status = 'paused' WHERE id = :i"), {"i": ids["li"]}
            )
            s.commit()
        deadline = time.monotonic() + 10
        while holder.current().match_ids({"country": "US"}) and time.monotonic() < deadline:
            time.sleep(0.005)
        index = holder.current()
        assert index.match_ids({"country": "US"}) == set()
        assert (ids["li"], "status", "line item is paused") in index.not_live
        assert holder.generation == generation and holder.patches >= 1  # patched, not rebuilt
    finally:
        holder.stop()


def test_agreement_check_finds_a_missed_change_and_heals(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        ids = _live_item(s)
    wrong: list[set[int]] = []
    holder = IndexHolder.from_session_factory(factory, on_disagreement=wrong.append)
    holder.refresh()
    assert holder.feed is not None
    holder.feed.reset(holder.feed.latest())
    with factory() as s:  # a change whose log row is lost: no patch can know about it
        s.execute(
            text("UPDATE line_items SET targeting = :t WHERE id = :i"),
            {"t": 'country = "CA"', "i": ids["li"]},
        )
        s.execute(delete(CatalogChange))
        s.commit()
    holder.feed.poll_once()
    assert holder.current().match_ids({"country": "US"}) == {ids["li"]}  # stale, as expected
    holder.refresh(check=True)
    assert wrong == [{ids["li"]}] and holder.disagreements == 1
    assert holder.current().match_ids({"country": "CA"}) == {ids["li"]}  # healed
    holder.refresh(check=True)
    assert holder.disagreements == 1  # agreeing again


def test_the_agreement_check_compares_outside_the_patch_lock(
    factory: sessionmaker[Session],
) -> None:
    """At 100k line items the comparison is a pass over every item; patches arriving meanwhile
    must not wait for it (they take the same lock the swap takes)."""
    with factory() as s:
        ids = _live_item(s)
    free_during_compare: list[bool] = []

    def on_disagreement(_wrong: set[int]) -> None:  # runs inside the comparison
        got: list[bool] = []
        probe = threading.Thread(target=lambda: got.append(holder._swap_lock.acquire(timeout=2)))
        probe.start()
        probe.join()
        if got[0]:
            holder._swap_lock.release()
        free_during_compare.append(got[0])

    holder = IndexHolder.from_session_factory(factory, on_disagreement=on_disagreement)
    holder.refresh()
    assert holder.feed is not None
    holder.feed.reset(holder.feed.latest())
    with factory() as s:  # a change the patches cannot see, so the check finds a difference
        s.execute(
            text("UPDATE line_items SET targeting = :t WHERE id = :i"),
            {"t": 'country = "CA"', "i": ids["li"]},
        )
        s.execute(delete(CatalogChange))
        s.commit()
    holder.refresh(check=True)
    assert free_during_compare == [True]
    assert holder.current().match_ids({"country": "CA"}) == {ids["li"]}


def test_catalog_writes_prune_old_change_log_rows(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log does not grow forever: a catalog write deletes rows older than the keep window
    (and only those), at most every few minutes per process."""
    from adtarget.commands import catalog_commands
    from adtarget.commands.catalog_commands import CatalogWriter
    from adtarget.settings import Settings

    with factory() as s:
        _live_item(s)
        old = latest_seq(s)
        s.execute(text("UPDATE catalog_changes SET changed_at = changed_at - 7200"))
        s.commit()
    monkeypatch.setattr(catalog_commands, "_last_change_prune", float("-inf"))
    writer = CatalogWriter(
        factory, actor="tester", settings=Settings(catalog_changes_keep_seconds=3600)
    )
    writer.create("advertiser", {"name": "after-prune"})
    with factory() as s:
        left = changes_after(s, 0)
    assert left and all(c.seq > old for c in left)  # old rows gone, the new write kept
    assert [c.kind for c in left] == ["advertiser"]

    with factory() as s:  # within the interval: no second prune
        s.execute(text("UPDATE catalog_changes SET changed_at = changed_at - 7200"))
        s.commit()
    writer.create("advertiser", {"name": "again"})
    with factory() as s:
        assert len(changes_after(s, 0)) == 2
