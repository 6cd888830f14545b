"""Delivery fixtures: both event stores (Parquet, real PostgreSQL) and an event generator.

``make_store()`` opens a *new* store object on the same backing data each call, which is how
the tests simulate a process restart.
"""

from __future__ import annotations

import contextlib
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adtarget.delivery.models import EVENT_TYPES
from adtarget.delivery.store import EventStore

#: The tests' clock: events fall in the three days up to this hour.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START_DAY = (NOW - timedelta(days=3)).date()
END_DAY = NOW.date()

StoreFactory = Callable[[], EventStore]


@pytest.fixture(params=["parquet", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores on one backing location (Parquet dir, or the test's PostgreSQL schema)."""
    opened: list[EventStore] = []
    if request.param == "parquet":
        from adtarget.delivery.parquet_store import ParquetEventStore

        def factory() -> EventStore:
            opened.append(ParquetEventStore(tmp_path / "events"))
            return opened[-1]
    else:
        url = request.getfixturevalue("pg_url")
        from adtarget.delivery.postgres import PostgresEventStore

        def factory() -> EventStore:
            opened.append(PostgresEventStore(url))
            return opened[-1]

    yield factory
    for s in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            s.close()


@pytest.fixture
def store(make_store: StoreFactory) -> EventStore:
    return make_store()


def make_events(
    n: int, *, seed: int = 1, prefix: str = "e", advertisers: int = 2, users: int = 40
) -> list[dict[str, Any]]:
    """``n`` valid events, unique ids, over three days; 2 advertisers with 2 campaigns each."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        adv = rng.randrange(advertisers)
        camp = f"c{adv}{rng.randrange(2)}"
        ts = NOW - timedelta(minutes=rng.randrange(0, 3 * 24 * 60 - 1))
        etype = rng.choices(EVENT_TYPES, weights=[5, 8, 2, 1, 1, 1, 3, 2])[0]
        ev: dict[str, Any] = {
            "event_id": f"{prefix}{i}",
            "type": etype,
            "ts": ts.isoformat().replace("+00:00", "Z"),
            "user_id": f"u{rng.randrange(users)}",
            "line_item_id": f"{camp}-l{rng.randrange(2)}",
            "campaign_id": camp,
            "advertiser_id": f"a{adv}",
            "creative_id": f"cr{rng.randrange(3)}",
            "country": rng.choice(["US", "CA", "DE"]),
            "device": rng.choice(["tv", "mobile"]),
        }
        if etype == "impression":
            ev["cost"] = round(rng.uniform(0.001, 0.05), 6)
        if rng.random() < 0.1:
            ev["dims"] = {"app": rng.choice(["a", "b"])}
        out.append(ev)
    return out


def bad_events(prefix: str = "bad") -> list[dict[str, Any]]:
    """One invalid event per rule (each has a unique id, so none of them can be a duplicate)."""
    good = make_events(1, seed=99, prefix=prefix)[0]
    cases: list[dict[str, Any]] = []
    for i, change in enumerate(
        [
            {"type": "view"},
            {"ts": "yesterday"},
            {"ts": None},
            {"cost": -1},
            {"cost": "abc"},
            {"event_id": None},
            {"user_id": ""},
            {"line_item_id": None},
            {"campaign_id": None},
            {"event_id": 1.5},
            {"dims": [1, 2]},
            {"country": 7},
            {"ts": (NOW + timedelta(days=3)).isoformat()},
        ]
    ):
        cases.append({**good, "event_id": f"{prefix}{i}", **change})
    return cases


def expected_counts(
    events: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
) -> dict[Any, dict[str, Any]]:
    """Recompute a report from raw (valid, unique) events in plain Python."""
    counter = {
        "decision": "requests",
        "impression": "impressions",
        "complete": "completes",
        "click": "clicks",
    }
    acc: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {
            "requests": 0,
            "impressions": 0,
            "completes": 0,
            "clicks": 0,
            "spend_micros": 0,
            "users": set(),
        }
    )
    for ev in events:
        a = acc[key(ev)]
        if ev["type"] in counter:
            a[counter[ev["type"]]] += 1
        a["spend_micros"] += round(float(ev.get("cost") or 0) * 1_000_000)
        if ev["type"] == "impression":
            a["users"].add(ev["user_id"])
    return dict(acc)


def day_of(ev: dict[str, Any]) -> str:
    return str(ev["ts"])[:10]
