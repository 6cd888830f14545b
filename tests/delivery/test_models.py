"""Event validation: every rule rejects with the field named, good events pass unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adtarget.delivery.models import validate_events

from .conftest import NOW, bad_events, make_events

GOOD = make_events(1, seed=2)[0]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"type": "view"}, "type", "unknown event type 'view'"),
        ({"ts": "yesterday"}, "ts", "not an ISO 8601"),
        ({"ts": None}, "ts", "required"),
        ({"ts": 1700000000}, "ts", "not an ISO 8601"),
        ({"ts": (NOW + timedelta(days=2)).isoformat()}, "ts", "future"),
        ({"ts": (NOW - timedelta(days=500)).isoformat()}, "ts", "retention"),
        ({"cost": -0.5}, "cost", ">= 0"),
        ({"cost": "abc"}, "cost", "not a number"),
        ({"cost": True}, "cost", "must be a number"),
        ({"cost": float("nan")}, "cost", "finite"),
        ({"event_id": None}, "event_id", "required"),
        ({"event_id": ""}, "event_id", "required"),
        ({"event_id": 1.5}, "event_id", "string or integer"),
        ({"event_id": float(10**29)}, "event_id", "past 64 bits"),  # orjson: a float
        ({"event_id": "x" * 300}, "event_id", "longer than"),
        ({"user_id": None}, "user_id", "required"),
        ({"line_item_id": None}, "line_item_id", "required"),
        ({"campaign_id": None}, "campaign_id", "required"),
        ({"advertiser_id": ""}, "advertiser_id", "required"),
        ({"country": 1}, "country", "must be a string"),
        ({"dims": [1]}, "dims", "must be an object"),
        ({"dims": "not json"}, "dims", "JSON object"),
    ],
)
def test_each_rule_rejects_naming_the_field(change: dict[str, Any], field: str, words: str) -> None:
    batch = validate_events([GOOD, {**GOOD, "event_id": "other", **change}], retention_days=400)
    assert batch.table.num_rows == 1
    assert batch.table["event_id"].to_pylist() == [GOOD["event_id"]]
    [rej] = batch.rejected
    assert rej["index"] == 1 and rej["field"] == field
    assert rej["reason"].startswith(f"{field}: ") and words in rej["reason"], rej["reason"]


def test_non_object_rejected_and_offsets_applied() -> None:
    batch = validate_events([5, GOOD, "x"], index_offset=100)
    assert [(r["index"], r["field"]) for r in batch.rejected] == [(100, "event"), (102, "event")]


def test_normalization_ints_offsets_naive_and_micros() -> None:
    ev = {
        **GOOD,
        "event_id": 42,
        "line_item_id": 7,
        "ts": "2026-11-20T10:30:00+02:00",
        "cost": "0.0000015",
        "dims": {"b": 1, "a": "x"},
    }
    naive = {**GOOD, "event_id": "n", "ts": "2026-11-20T08:30:00", "cost": 3}
    table = validate_events([ev, naive], now=datetime(2026, 11, 21, tzinfo=UTC)).table
    rows = table.to_pylist()
    assert rows[0]["event_id"] == "42" and rows[0]["line_item_id"] == "7"
    assert rows[0]["ts"] == datetime(2026, 11, 20, 8, 30, tzinfo=UTC) == rows[1]["ts"]
    assert rows[0]["cost_micros"] == 2 and rows[1]["cost_micros"] == 3_000_000  # half-even
    assert rows[0]["dims"] == '{"a": "x", "b": 1}'


def test_in_batch_duplicates_keep_the_first() -> None:
    batch = validate_events([GOOD, {**GOOD, "cost": 9}, {**GOOD, "type": "nope"}])
    assert batch.duplicates == 1 and len(batch.rejected) == 1
    assert batch.table["cost_micros"].to_pylist() == [round(GOOD.get("cost", 0) * 1e6)]


def test_catalog_lookup_fills_and_checks() -> None:
    catalog = {"l1": ("c1", "a1")}
    asked: list[list[str]] = []

    def lookup(ids: Any) -> dict[str, tuple[str, str]]:
        asked.append(list(ids))
        return {i: catalog[i] for i in ids if i in catalog}

    base = {k: v for k, v in GOOD.items() if k not in ("campaign_id", "advertiser_id")}
    events = [
        {**base, "event_id": "1", "line_item_id": "l1"},
        {**base, "event_id": "2", "line_item_id": "l9"},
        {**base, "event_id": "3", "line_item_id": "l1", "campaign_id": "c2"},
    ]
    batch = validate_events(events, lookup=lookup)
    assert asked == [["l1", "l9"]]
    assert batch.table.select(["campaign_id", "advertiser_id"]).to_pylist() == [
        {"campaign_id": "c1", "advertiser_id": "a1"}
    ]
    assert [(r["index"], r["field"]) for r in batch.rejected] == [
        (1, "line_item_id"),
        (2, "campaign_id"),
    ]


def test_bad_events_fixture_all_rejected() -> None:
    bad = bad_events()
    batch = validate_events(bad)
    assert batch.table.num_rows == 0 and len(batch.rejected) == len(bad)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=5),
            st.floats(allow_nan=True),
            st.booleans(),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        ),
        min_size=0,
        max_size=6,
    ),
    st.sampled_from(["event_id", "ts", "cost", "type", "dims", "country", "user_id"]),
)
def test_never_half_lost(values: list[Any], field: str) -> None:
    events = [{**GOOD, "event_id": f"h{i}", field: v} for i, v in enumerate(values)]
    if field == "event_id":
        events = [{**GOOD, "event_id": v} for v in values]
    batch = validate_events(events)
    # every event is exactly one of: stored, duplicate, rejected
    assert batch.table.num_rows + batch.duplicates + len(batch.rejected) == len(events)
    assert len({r["index"] for r in batch.rejected}) == len(batch.rejected)


@pytest.mark.parametrize(
    ("q", "stored"),
    [
        (1, "first_quartile"),
        ("2", "midpoint"),
        (75, "third_quartile"),
        ("midpoint", "midpoint"),
    ],
)
def test_quartile_events_are_stored_as_the_named_progress_type(q: Any, stored: str) -> None:
    batch = validate_events([{**GOOD, "type": "quartile", "quartile": q}])
    assert batch.rejected == [] and batch.table["type"].to_pylist() == [stored]


@pytest.mark.parametrize("q", [None, 4, "half", True])
def test_quartile_without_a_valid_quartile_is_rejected(q: Any) -> None:
    ev = {**GOOD, "type": "quartile"} | ({} if q is None else {"quartile": q})
    [rej] = validate_events([ev]).rejected
    assert rej["field"] == "quartile" and "quartile event" in rej["reason"]
