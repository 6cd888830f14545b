"""What a break needs reaches the index by patching, on SQLite and PostgreSQL: an advertiser's
or campaign's category change and a creative's new duration (and its undo) patch the line items
they reach, exactly as a rebuild would read them."""

from __future__ import annotations

import uuid

from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.decision.index_holder import IndexHolder
from adtarget.decision.models import LiveLineItem
from adtarget.decision.patched_index import differences

from .conftest import Factory

FLIGHT = {"start": "2026-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}


def _patched(holder: IndexHolder, fac: Factory, li_id: int) -> LiveLineItem:
    assert holder.feed is not None
    holder.feed.poll_once()
    patched = holder.current()
    rebuilt = IndexHolder.from_session_factory(fac, follow=False).refresh()
    assert differences(patched, rebuilt) == set()
    return next(it for _, it in patched.live_positions() if it.id == li_id)


def test_category_and_duration_changes_are_patched_like_a_rebuild(factory: Factory) -> None:
    w = CatalogWriter(factory, actor=f"pods-{uuid.uuid4().hex[:8]}", depth=100)
    adv = w.create("advertiser", {"name": "Acme", "category": "auto"})
    camp = w.create(
        "campaign", {"advertiser_id": adv["id"], "name": "c", "budget_total": 10, **FLIGHT}
    )
    cr = w.create(
        "creative",
        {
            "advertiser_id": adv["id"],
            "name": "spot",
            "format": "video_30s",
            "attributes": {"media_url": "https://cdn.example/s.mp4", "duration": 30},
        },
    )
    li = w.create("line_item", {"campaign_id": camp["id"], "name": "li", "bid_cpm": 1})
    w.attach_creative(li["id"], cr["id"])
    w.update("line_item", li["id"], {"status": "active"})
    w.update("campaign", camp["id"], {"status": "active"})
    holder = IndexHolder.from_session_factory(factory, patch_max=10_000)
    try:
        holder.refresh()
        assert holder.feed is not None
        holder.feed.reset(holder.feed.latest())
        item = _patched(holder, factory, li["id"])
        assert item.category == "auto" and item.durations == {cr["id"]: 30.0}
        w.update("advertiser", adv["id"], {"category": "telecom"})
        assert _patched(holder, factory, li["id"]).category == "telecom"
        w.update("campaign", camp["id"], {"category": "finance"})  # the campaign's wins
        assert _patched(holder, factory, li["id"]).category == "finance"
        w.update("creative", cr["id"], {"attributes": {"media_url": "https://x.example/a.mp4"}})
        assert _patched(holder, factory, li["id"]).durations == {}  # no duration: no slot
        w.undo()
        w.undo()
        item = _patched(holder, factory, li["id"])
        assert item.category == "telecom" and item.durations == {cr["id"]: 30.0}
    finally:
        holder.stop()
