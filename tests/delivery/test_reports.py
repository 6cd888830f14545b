"""Report math on a hand-built day: ctr, completion rate, eCPM, hours, scoping, names, CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from adtarget.delivery.reports import report_columns, rows_to_csv, run_report
from adtarget.delivery.service import ingest_events
from adtarget.delivery.store import EventStore
from adtarget.errors import InvalidValue

from .conftest import END_DAY, NOW

H1 = NOW.replace(hour=1)  # inside END_DAY whatever the time of day (at most a day ahead)
H2 = NOW.replace(hour=2)


def _ev(
    i: int,
    etype: str,
    *,
    camp: str = "c1",
    adv: str = "a1",
    user: str = "u1",
    cost: float | None = None,
    hour=H1,
) -> dict:  # type: ignore[no-untyped-def]
    ev = {
        "event_id": f"r{i}",
        "type": etype,
        "ts": (hour + timedelta(minutes=i % 50)).isoformat(),
        "user_id": user,
        "line_item_id": f"{camp}-l",
        "campaign_id": camp,
        "advertiser_id": adv,
        "creative_id": "cr",
        "country": "US",
        "device": "tv",
    }
    if cost is not None:
        ev["cost"] = cost
    return ev


@pytest.fixture
def loaded(store: EventStore) -> EventStore:
    events = (
        [_ev(i, "decision") for i in range(10)]
        + [_ev(100 + i, "impression", cost=0.004, user=f"u{i % 4}") for i in range(8)]
        + [_ev(200 + i, "complete") for i in range(6)]
        + [_ev(300 + i, "click") for i in range(2)]
        + [_ev(400 + i, "impression", hour=H2, cost=0.01, user="u9") for i in range(2)]
        + [_ev(500 + i, "impression", camp="c2", adv="a2", cost=0.5, user="z") for i in range(4)]
    )
    result = ingest_events(store=store, events=events)
    assert result.accepted == len(events)
    return store


def test_ratios_and_money(loaded: EventStore) -> None:
    rows = run_report(
        store=loaded,
        start=END_DAY,
        end=END_DAY,
        group_by="campaign",
        metrics="requests,impressions,completes,clicks,ctr,completion_rate,spend,ecpm,reach",
        advertiser_id="a1",
    )
    assert rows == [
        {
            "campaign_id": "c1",
            "requests": 10,
            "impressions": 10,
            "completes": 6,
            "clicks": 2,
            "ctr": 0.2,
            "completion_rate": 0.6,
            "spend": 0.052,
            "ecpm": 5.2,
            "reach": 5,
        }
    ]


def test_hour_grouping_and_scoping(loaded: EventStore) -> None:
    rows = run_report(
        store=loaded,
        start=END_DAY - timedelta(days=1),
        end=END_DAY,
        group_by="advertiser,hour",
        metrics="impressions,reach",
    )
    by = {(r["advertiser_id"], r["hour"]): r for r in rows}
    h1 = H1.strftime("%Y-%m-%dT%H:00:00Z")
    h2 = H2.strftime("%Y-%m-%dT%H:00:00Z")
    assert by[("a1", h1)] == {"advertiser_id": "a1", "hour": h1, "impressions": 8, "reach": 4}
    assert by[("a1", h2)]["impressions"] == 2 and by[("a1", h2)]["reach"] == 1
    assert by[("a2", h1)]["impressions"] == 4
    scoped = run_report(
        store=loaded,
        start=END_DAY,
        end=END_DAY,
        group_by="advertiser",
        metrics="spend",
        advertiser_id="a2",
    )
    assert scoped == [{"advertiser_id": "a2", "spend": 2.0}]
    # an hour window: only H2
    only = run_report(
        store=loaded,
        start=H2,
        end=H2 + timedelta(hours=1),
        group_by=[],
        metrics="impressions",
        advertiser_id="a1",
    )
    assert only == [{"impressions": 2}]


def test_zero_impressions_give_null_ratios_and_empty_ranges(loaded: EventStore) -> None:
    far = END_DAY - timedelta(days=30)
    assert run_report(store=loaded, start=far, end=far, group_by="day", metrics="ctr") == []
    total = run_report(store=loaded, start=far, end=far, group_by=[], metrics="ctr,ecpm,reach")
    assert total == [{"ctr": None, "ecpm": None, "reach": 0}]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"group_by": "campaign,planet"}, "group_by"),
        ({"metrics": "impressions,profit"}, "metrics"),
        ({"start": "2026-13-01"}, "from"),
        ({"end": "2020-01-01"}, "to"),
        ({"end": "9999-12-31"}, "to"),
        ({"start": "0001-01-01", "end": "9999-12-31"}, "to"),
    ],
)
def test_unknown_names_and_bad_ranges_name_the_field(
    loaded: EventStore, kw: dict, field: str
) -> None:
    args = {"start": END_DAY, "end": END_DAY, "group_by": "day", "metrics": "impressions", **kw}
    with pytest.raises(InvalidValue) as err:
        run_report(store=loaded, **args)
    assert err.value.field == field
    bad = kw.get("group_by", kw.get("metrics", ""))
    if bad:
        assert bad.split(",")[1] in err.value.message


def test_csv_output(loaded: EventStore) -> None:
    rows = run_report(
        store=loaded, start=END_DAY, end=END_DAY, group_by="campaign,day", metrics="impressions,ctr"
    )
    text = rows_to_csv(rows, report_columns("campaign,day", "impressions,ctr"))
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "campaign_id,day,impressions,ctr"
    assert [(r["campaign_id"], r["impressions"], r["ctr"]) for r in parsed] == [
        ("c1", "10", "0.2"),
        ("c2", "4", "0.0"),
    ]


def test_issue_names_served_and_completions_are_aliases(loaded: EventStore) -> None:
    rows = run_report(
        store=loaded,
        start=END_DAY,
        end=END_DAY,
        group_by="campaign",
        metrics="served,completions,requests,completes",
        advertiser_id="a1",
    )
    assert rows == [
        {"campaign_id": "c1", "served": 10, "completions": 6, "requests": 10, "completes": 6}
    ]


def test_hour_window_with_reach_reads_only_that_hour(loaded: EventStore) -> None:
    """Reach scans raw events; an hour window must filter by ``ts``, not only by day."""
    only = run_report(
        store=loaded,
        start=H2,
        end=H2 + timedelta(hours=1),
        group_by=[],
        metrics="impressions,reach",
        advertiser_id="a1",
    )
    assert only == [{"impressions": 2, "reach": 1}]
