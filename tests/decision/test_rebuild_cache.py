"""The rebuild cache never serves a stale line item: cached rebuilds equal rebuilds from scratch.

Edits go through raw SQL on purpose (some without bumping ``version``), because the cache must be
correct from what it reads, not from the command layer's discipline. SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog.tables import (
    Advertiser,
    Campaign,
    Creative,
    LineItem,
    LineItemCreative,
    Segment,
)
from adtarget.decision.index import LineItemIndex
from adtarget.decision.index_holder import IndexHolder
from adtarget.decision.loader import load_catalog
from adtarget.decision.rebuild_cache import RebuildCache
from adtarget.errors import RuleSyntaxError
from adtarget.rules.format import to_json
from adtarget.rules.parse import parse

START = datetime(2026, 1, 1, tzinfo=UTC)
COUNTRIES = ["US", "FR", "DE", "BR"]
GENRES = ["scifi", "drama", "kids"]
CLAUSES = [
    lambda r: f'country = "{r.choice(COUNTRIES)}"',
    lambda r: f'country not in ("{r.choice(COUNTRIES)}", "{r.choice(COUNTRIES)}")',
    lambda r: f"age between {r.randint(10, 40)} and {r.randint(41, 90)}",
    lambda r: f'genres has any ("{r.choice(GENRES)}")',
    lambda r: "age is missing",
    lambda r: 'segment("fans")',
    lambda r: 'not segment("fans")',
]


def _rule_text(rng: random.Random) -> str:
    return " and ".join(c(rng) for c in rng.sample(CLAUSES, rng.randint(1, 3)))


def _targeting(rng: random.Random, *, with_json: bool = True) -> dict[str, Any]:
    text = _rule_text(rng)
    return {"targeting": text, "targeting_json": to_json(parse(text)) if with_json else None}


def _seed(factory: sessionmaker[Session], rng: random.Random, n: int) -> None:
    with factory() as s, s.begin():
        s.execute(insert(Advertiser), [{"id": a, "name": f"adv{a}"} for a in (1, 2)])
        s.execute(
            insert(Campaign),
            [
                {
                    "id": c,
                    "advertiser_id": 1 + c % 2,
                    "name": f"camp{c}",
                    "status": "active",
                    "budget_total": Decimal(10_000),
                    "start": START,
                    "end": START + timedelta(days=60),
                }
                for c in (1, 2, 3)
            ],
        )
        s.execute(
            insert(Creative),
            [
                {"id": 1, "advertiser_id": 1, "name": "v1", "format": "video_15s"},
                {"id": 2, "advertiser_id": 2, "name": "v2", "format": "video_30s"},
                {"id": 3, "advertiser_id": 1, "name": "p1", "format": "pause_ad"},
            ],
        )
        s.add(Segment(name="fans", kind="rule", rule='genres has any ("scifi")'))
        s.execute(
            insert(LineItem),
            [
                {
                    "id": i,
                    "campaign_id": 1 + i % 3,
                    "name": f"li{i}",
                    "status": "active",
                    "priority": rng.randint(1, 4),
                    "bid_cpm": Decimal(rng.randint(1, 9)),
                    "formats": [],
                    **_targeting(rng, with_json=i % 4 != 0),
                }
                for i in range(1, n + 1)
            ],
        )
        s.execute(
            insert(LineItemCreative),
            [{"line_item_id": i, "creative_id": 1 + i % 3} for i in range(1, n + 1)],
        )


def _edit(factory: sessionmaker[Session], rng: random.Random, n: int) -> str:
    """One random catalog edit by raw SQL; returns what it did (for the failure message)."""
    li = rng.randint(1, n)
    kind = rng.choice(
        ["retarget", "retarget_text_only", "status", "segment", "budget", "daypart", "creative"]
        + ["approval", "cap", "bid"]
    )
    with factory() as s, s.begin():
        if kind == "retarget":  # no version bump: the cache must key on what is stored
            s.execute(update(LineItem).where(LineItem.id == li).values(**_targeting(rng)))
        elif kind == "retarget_text_only":
            s.execute(
                update(LineItem).where(LineItem.id == li).values(**_targeting(rng, with_json=False))
            )
        elif kind == "status":
            s.execute(
                update(LineItem)
                .where(LineItem.id == li)
                .values(status=rng.choice(["active", "paused"]))
            )
        elif kind == "segment":
            s.execute(
                update(Segment)
                .where(Segment.name == "fans")
                .values(rule=f'genres has any ("{rng.choice(GENRES)}")', rule_json=None)
            )
        elif kind == "budget":
            s.execute(
                update(Campaign)
                .where(Campaign.id == 1 + li % 3)
                .values(budget_total=Decimal(rng.randint(1, 5000)))
            )
        elif kind == "daypart":
            s.execute(
                update(Campaign)
                .where(Campaign.id == 1 + li % 3)
                .values(dayparting=rng.choice([None, {"mon": [9, 10]}, {"all": [20, 21]}]))
            )
        elif kind == "creative":
            attached = s.scalar(
                select(LineItemCreative.creative_id).where(
                    LineItemCreative.line_item_id == li, LineItemCreative.creative_id == 3
                )
            )
            if attached:
                s.execute(
                    delete(LineItemCreative).where(
                        LineItemCreative.line_item_id == li, LineItemCreative.creative_id == 3
                    )
                )
            else:
                s.execute(insert(LineItemCreative).values(line_item_id=li, creative_id=3))
        elif kind == "approval":
            s.execute(
                update(Creative)
                .where(Creative.id == rng.randint(1, 3))
                .values(approval_status=rng.choice(["approved", "pending"]))
            )
        elif kind == "cap":
            count = rng.choice([None, 2, 5])
            s.execute(
                update(Advertiser)
                .where(Advertiser.id == rng.randint(1, 2))
                .values(
                    frequency_cap_count=count,
                    frequency_cap_window_seconds=3600 if count else None,
                )
            )
        else:
            s.execute(
                update(LineItem)
                .where(LineItem.id == li)
                .values(bid_cpm=Decimal(rng.randint(1, 9)), formats=["video_15s"])
            )
    return f"{kind} li={li}"


def _users(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        u: dict[str, Any] = {
            "country": rng.choice(COUNTRIES),
            "age": rng.randint(5, 95),
            "genres": frozenset(rng.sample(GENRES, rng.randint(0, 2))),
        }
        for k in list(u):
            if rng.random() < 0.2:
                del u[k]
        out.append(u)
    return out


def _from_scratch(factory: sessionmaker[Session]) -> LineItemIndex:
    with factory() as s:
        loaded = load_catalog(s)  # a fresh cache every call
    return LineItemIndex(loaded.items, not_live=loaded.not_live)


def test_cached_rebuilds_equal_rebuilds_from_scratch(factory: sessionmaker[Session]) -> None:
    rng = random.Random(11)
    n = 30
    _seed(factory, rng, n)
    holder = IndexHolder.from_session_factory(factory)
    holder.refresh()
    users = _users(rng, 60)
    for step in range(25):
        did = _edit(factory, rng, n)
        cached = holder.refresh()
        fresh = _from_scratch(factory)
        assert cached.items == fresh.items, f"step {step}: {did}"
        assert sorted(cached.not_live) == sorted(fresh.not_live), f"step {step}: {did}"
        for u in users:
            assert cached.match_ids(u) == fresh.match_ids(u), f"step {step}: {did}, user {u}"
    assert holder.rebuild_cache is not None
    stats = holder.rebuild_cache.stats()
    assert stats["parsed_hits"] > stats["parsed_misses"]  # the cache did its job


def test_a_segment_edit_reaches_every_line_item_that_names_it(
    factory: sessionmaker[Session],
) -> None:
    rng = random.Random(3)
    _seed(factory, rng, 2)
    with factory() as s, s.begin():
        s.execute(update(LineItem).values(targeting='segment("fans")', targeting_json=None))
    holder = IndexHolder.from_session_factory(factory)
    scifi, drama = {"genres": frozenset({"scifi"})}, {"genres": frozenset({"drama"})}
    assert holder.refresh().match_ids(scifi) == {1, 2}
    with factory() as s, s.begin():
        s.execute(update(Segment).values(rule='genres has any ("drama")'))
    index = holder.refresh()
    assert index.match_ids(scifi) == set() and index.match_ids(drama) == {1, 2}


def test_unchanged_line_items_are_reused_and_forgotten_once_gone() -> None:
    cache = RebuildCache()
    calls: list[str] = []

    def parse_counted(text: str) -> Any:
        calls.append(text)
        return parse(text)

    cache.begin_rebuild()
    first = cache.parsed("text:age > 3", lambda: parse_counted("age > 3"))
    cache.begin_rebuild()
    assert cache.parsed("text:age > 3", lambda: parse_counted("age > 3")) is first
    assert cache.compiled(first) is cache.compiled(first)
    cache.begin_rebuild()  # not used by this rebuild ...
    cache.begin_rebuild()  # ... so gone after the next
    again = cache.parsed("text:age > 3", lambda: parse_counted("age > 3"))
    assert again is not first and again == first
    assert calls == ["age > 3", "age > 3"]


def test_a_failing_parse_caches_nothing() -> None:
    cache = RebuildCache()
    cache.begin_rebuild()
    with pytest.raises(RuleSyntaxError, match="column 10"):
        cache.parsed("text:country >", lambda: parse("country >"))
    assert cache.stats()["parsed_entries"] == 0
