"""Loading the live set from a real catalog (SQLite and PostgreSQL) and following its changes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog.live import catalog_marker
from adtarget.catalog.tables import (
    Advertiser,
    Campaign,
    Creative,
    LineItem,
    LineItemCreative,
    Segment,
)
from adtarget.decision.index_holder import IndexHolder
from adtarget.decision.loader import load_catalog, load_live_line_items
from adtarget.decision.models import FrequencyCap
from adtarget.rules.ast import SegmentRef

START = datetime(2026, 1, 1, tzinfo=UTC)


def _seed(s: Session) -> dict[str, int]:
    adv = Advertiser(name="Acme", frequency_cap_count=10, frequency_cap_window_seconds=86400)
    s.add(adv)
    s.flush()
    camp = Campaign(
        advertiser_id=adv.id,
        name="Spring",
        status="active",
        budget_total=Decimal("1000"),
        budget_daily=Decimal("100"),
        start=START,
        end=START + timedelta(days=30),
        timezone="Europe/Paris",
        dayparting={"mon": [9, 10]},
        frequency_cap_count=3,
        frequency_cap_window_seconds=3600,
        pacing_mode="even",
    )
    paused = Campaign(
        advertiser_id=adv.id,
        name="Paused",
        status="paused",
        budget_total=Decimal("10"),
        start=START,
        end=START + timedelta(days=1),
    )
    s.add_all([camp, paused])
    s.flush()
    s.add(Segment(name="scifi_fans", kind="rule", rule='genres has any ("scifi")'))
    s.add(Segment(name="uploaded", kind="list"))
    video = Creative(advertiser_id=adv.id, name="v", format="video_30s")
    pause_ad = Creative(advertiser_id=adv.id, name="p", format="pause_ad")
    pending = Creative(
        advertiser_id=adv.id, name="pending", format="video_15s", approval_status="pending"
    )
    s.add_all([video, pause_ad, pending])
    s.flush()
    live = LineItem(
        campaign_id=camp.id,
        name="live",
        status="active",
        priority=2,
        bid_cpm=Decimal("12.5"),
        targeting='country = "FR" and segment("scifi_fans") and segment("uploaded")',
        formats=["video_30s", "pause_ad"],
        frequency_cap_count=2,
        frequency_cap_window_seconds=600,
        budget_total=Decimal("50"),
        pacing_mode="asap",
    )
    draft = LineItem(
        campaign_id=camp.id,
        name="draft",
        status="draft",
        priority=1,
        bid_cpm=Decimal("1"),
        targeting="",
    )
    in_paused = LineItem(
        campaign_id=paused.id, name="in paused", status="active", bid_cpm=Decimal("1"), targeting=""
    )
    no_creative = LineItem(
        campaign_id=camp.id, name="bare", status="active", bid_cpm=1, targeting=""
    )
    only_pending = LineItem(
        campaign_id=camp.id,
        name="pending only",
        status="active",
        bid_cpm=Decimal("1"),
        targeting="",
    )
    s.add_all([live, draft, in_paused, no_creative, only_pending])
    s.flush()
    for li, cr in (
        (live, video),
        (live, pause_ad),
        (draft, video),
        (in_paused, video),
        (only_pending, pending),
    ):
        s.add(LineItemCreative(line_item_id=li.id, creative_id=cr.id))
    s.commit()
    return {
        "live": live.id,
        "camp": camp.id,
        "adv": adv.id,
        "video": video.id,
        "pause": pause_ad.id,
        "draft": draft.id,
        "in_paused": in_paused.id,
        "bare": no_creative.id,
        "pending_only": only_pending.id,
        "paused": paused.id,
    }


def test_loads_only_servable_line_items(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        ids = _seed(s)
    with factory() as s:
        items = load_live_line_items(s)
    assert [it.id for it in items] == [ids["live"]]
    it = items[0]
    assert it.campaign_id == ids["camp"] and it.advertiser_id == ids["adv"]
    assert it.priority == 2 and it.bid_cpm == 12.5
    assert dict(it.creatives) == {"video_30s": (ids["video"],), "pause_ad": (ids["pause"],)}
    assert set(it.caps) == {
        FrequencyCap("line_item", ids["live"], 2, 600),
        FrequencyCap("campaign", ids["camp"], 3, 3600),
        FrequencyCap("advertiser", ids["adv"], 10, 86400),
    }
    assert it.campaign_start == START and it.campaign_end == START + timedelta(days=30)
    assert it.budget_total == 50.0 and it.campaign_budget_total == 1000.0
    assert it.campaign_budget_daily == 100.0 and it.pacing_mode == "asap"
    assert it.campaign_pacing_mode == "even"
    assert it.timezone == "Europe/Paris" and it.dayparting == frozenset({9, 10})
    # the rule-based segment is inlined, the list segment stays a reference
    assert it.rule is not None
    assert SegmentRef("scifi_fans") not in it.rule.children  # type: ignore[union-attr]
    assert SegmentRef("uploaded") in it.rule.children  # type: ignore[union-attr]


def test_catalog_names_why_every_other_line_item_cannot_serve(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s:
        ids = _seed(s)
        bad = LineItem(
            campaign_id=ids["camp"],
            name="bad rule",
            status="active",
            bid_cpm=Decimal("1"),
            targeting="country = = 1",
        )
        s.add(bad)
        s.flush()
        s.add(LineItemCreative(line_item_id=bad.id, creative_id=ids["video"]))
        s.commit()
        bad_id = bad.id
    with factory() as s:
        loaded = load_catalog(s)
    assert [it.id for it in loaded.items] == [ids["live"]]
    reasons = {li: (reason, detail) for li, reason, detail in loaded.not_live}
    assert reasons == {
        ids["draft"]: ("status", "line item is draft"),
        ids["in_paused"]: ("status", f"campaign {ids['paused']} is paused"),
        ids["bare"]: ("no_creative", "no approved, active creative in the line item's formats"),
        ids["pending_only"]: (
            "no_creative",
            "no approved, active creative in the line item's formats",
        ),
        bad_id: reasons[bad_id],
    }
    assert reasons[bad_id][0] == "invalid" and "unreadable" in reasons[bad_id][1]


def test_a_segment_that_shrank_below_the_minimum_stops_its_line_items(
    factory: sessionmaker[Session],
) -> None:
    """Writes refuse tiny segments; this is the segment shrinking after the line item was made."""
    from sqlalchemy import select

    with factory() as s:
        ids = _seed(s)
    with factory() as s:
        assert [it.id for it in load_catalog(s, min_segment_size=100).items] == [ids["live"]]
        seg = s.scalars(select(Segment).where(Segment.name == "uploaded")).one()
        seg.last_size = 12  # the next publish measured 12 members
        s.commit()
    with factory() as s:
        assert [it.id for it in load_catalog(s, min_segment_size=0).items] == [ids["live"]]
        loaded = load_catalog(s, min_segment_size=100)
    assert loaded.items == []
    reasons = {li: (reason, detail) for li, reason, detail in loaded.not_live}
    assert reasons[ids["live"]][0] == "segment_below_minimum"
    assert "'uploaded' has 12 users" in reasons[ids["live"]][1]


def test_holder_rebuilds_on_catalog_change_and_swaps_whole(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        ids = _seed(s)
    holder = IndexHolder.from_session_factory(factory, poll_seconds=0.0)
    assert len(holder.current()) == 0  # nothing built before the first refresh
    first = holder.refresh()
    assert len(first) == 1 and holder.current() is first
    assert not holder.check()  # marker unchanged: no rebuild
    with factory() as s:
        marker_before = catalog_marker(s)
        li = s.get(LineItem, ids["live"])
        assert li is not None
        li.status = "paused"
        s.commit()
        assert catalog_marker(s) != marker_before
    assert holder.check()
    second = holder.current()
    assert second is not first and len(second) == 0
    assert len(first) == 1  # an index already handed to a request is never mutated


def test_requests_never_see_a_half_built_index() -> None:
    from .strategies import line_item

    sets = [[line_item(i, None) for i in range(n)] for n in (50, 120)]
    turn = {"n": 0}

    def load() -> list:  # type: ignore[type-arg]
        turn["n"] += 1
        return sets[turn["n"] % 2]

    holder = IndexHolder(load=load, marker=lambda: turn["n"], poll_seconds=0.0)
    holder.refresh()
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            index = holder.current()
            seen.add(len(index.match_ids({})))

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(30):
        holder.refresh()
    stop.set()
    t.join()
    assert seen <= {50, 120} and seen
