"""``POST /v1/forecast`` and the request log behind it, through the app."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.decision.test_forecast_split import forks  # noqa: F401  (fixture)

from adtarget.api.app import create_app
from adtarget.api.container import container_of
from adtarget.decision.request_store import ParquetRequestStore, SampledRequest
from adtarget.settings import Settings


@pytest.fixture
def app(settings: Settings, started: Callable[..., TestClient]) -> FastAPI:
    app = create_app(settings.model_copy(update={"request_log_sample_rate": 1.0}))
    started(app)
    return app


def _seed(client: TestClient) -> dict[str, Any]:
    adv = client.post("/v1/advertisers", json={"name": "acme"}).json()
    start = datetime.now(UTC) - timedelta(days=30)
    camp = client.post(
        "/v1/campaigns",
        json={
            "advertiser_id": adv["id"],
            "name": "c",
            "budget_total": 1000,
            "start": start.isoformat(),
            "end": (start + timedelta(days=400)).isoformat(),
        },
    ).json()
    li = client.post(
        "/v1/line-items",
        json={"campaign_id": camp["id"], "name": "li", "targeting": "", "priority": 2,
              "bid_cpm": 3.0},
    ).json()  # fmt: skip
    cr = client.post(
        "/v1/creatives", json={"advertiser_id": adv["id"], "name": "cr", "format": "video_15s"}
    ).json()
    client.post(f"/v1/line-items/{li['id']}/creatives", json={"creative_id": cr["id"]})
    client.patch(f"/v1/campaigns/{camp['id']}", json={"status": "active"})
    client.patch(f"/v1/line-items/{li['id']}", json={"status": "active"})
    return {"advertiser": adv, "campaign": camp, "line_item": li}


def test_decisions_are_sampled_into_the_log(app: FastAPI) -> None:
    client = TestClient(app)
    for i in range(20):
        r = client.post("/v1/decisions", json={"user_id": f"u{i}", "context": {"device": "tv"}})
        assert r.status_code == 200
    log = container_of(app).request_log
    assert log is not None
    log.close()  # writes what is queued
    store = ParquetRequestStore(container_of(app).settings.requests_dir)
    table = store.read_day(store.days()[-1])
    assert table.num_rows == 20
    assert set(table.column("user_id").to_pylist()) == {f"u{i}" for i in range(20)}


def test_forecast_a_proposal_and_an_existing_line_item(app: FastAPI) -> None:
    client = TestClient(app)
    seeded = _seed(client)
    settings = container_of(app).settings
    yesterday = datetime.now(UTC) - timedelta(days=1)
    rows = [
        SampledRequest(yesterday.replace(hour=h % 24).timestamp(), f"u{i}", {"device": "tv"},
                       None, 1, (), 1.0)
        for i in range(30) for h in range(3)
    ]  # fmt: skip
    ParquetRequestStore(settings.requests_dir).write(rows)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    body = {
        "targeting": "",
        "start": (start + timedelta(days=1)).isoformat(),
        "end": (start + timedelta(days=2)).isoformat(),
        "priority": 1,
        "bid_cpm": 2.0,
        "frequency_cap": {"count": 2, "window_seconds": 86400},
    }
    r = client.post("/v1/forecast", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    for key in ("matched_requests", "available_impressions", "forecast_impressions",
                "unique_users", "contended", "by_day", "sample_rate", "confidence"):  # fmt: skip
        assert key in answer
    assert answer["matched_requests"] == 90
    assert answer["forecast_impressions"] == 60  # the cap: 2 of each user's 3 requests
    assert answer["unique_users"] == 30
    taken = {c["line_item_id"]: c for c in answer["contended"]}
    assert taken[seeded["line_item"]["id"]]["impressions_taken_from_it"] == 60
    # the existing line item, with its priority changed
    r = client.post(
        "/v1/forecast",
        json={"line_item_id": seeded["line_item"]["id"],
              "changes": {"start": body["start"], "end": body["end"], "priority": 3}},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["forecast_impressions"] == 90


def test_bad_forecast_bodies_are_4xx_naming_the_field(app: FastAPI) -> None:
    client = TestClient(app)
    r = client.post("/v1/forecast", json={"targeting": "country = ", "bid_cpm": 1,
                                          "start": "2030-01-01T00:00:00Z",
                                          "end": "2030-01-02T00:00:00Z"})  # fmt: skip
    assert r.status_code == 422 and r.json()["error"]["field"] == "targeting"
    r = client.post("/v1/forecast", json={"bid_cpm": 1, "start": "2030-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "end"
    r = client.post("/v1/forecast", json={"line_item_id": 999, "changes": {}})
    assert r.status_code == 404
    r = client.post("/v1/forecast", json={"bid_cpm": 1, "start": "2030-01-02T00:00:00Z",
                                          "end": "2030-01-01T00:00:00Z"})  # fmt: skip
    assert r.status_code == 422 and r.json()["error"]["field"] == "end"
    r = client.post("/v1/forecast", json={"bid_cpm": 1, "start": "2030-01-01T00:00:00Z",
                                          "end": "2030-01-02T00:00:00Z",
                                          "creative_duration": 0})  # fmt: skip
    assert r.status_code == 422 and r.json()["error"]["field"] == "creative_duration"
    ended = {"bid_cpm": 1, "start": "2001-01-01T00:00:00Z", "end": "2001-02-01T00:00:00Z"}
    for body in (ended, {**ended, "async": True}):  # checked before a job starts, too
        r = client.post("/v1/forecast", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == "end", r.text
        assert "nothing left to forecast" in r.json()["error"]["message"]


def test_a_flight_is_forecast_from_now_for_at_most_366_days(app: FastAPI) -> None:
    client = TestClient(app)
    _seed(client)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    rows = [SampledRequest(yesterday.timestamp(), f"u{i}", {}, None, 1, (), 1.0) for i in range(5)]
    ParquetRequestStore(container_of(app).settings.requests_dir).write(rows)
    began = datetime.now(UTC)
    r = client.post("/v1/forecast", json={"bid_cpm": 1, "start": "0001-01-01T00:00:00Z",
                                          "end": "9999-12-31T00:00:00Z"})  # fmt: skip
    assert r.status_code == 200, r.text
    window = r.json()["window"]
    start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
    assert window["whole_flight"] is False
    assert began <= start <= datetime.now(UTC) and end - start == timedelta(days=366)
    assert len(r.json()["by_day"]) == 367  # the rest of today and 366 more days (partly)


def test_changes_must_be_an_object(app: FastAPI) -> None:
    client = TestClient(app)
    seeded = _seed(client)
    for bad in ([], None, "priority=3", 3):
        r = client.post(
            "/v1/forecast", json={"line_item_id": seeded["line_item"]["id"], "changes": bad}
        )
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["field"] == "changes"


def _logged_yesterday(app: FastAPI) -> dict:
    """Four requests of each of 40 users logged yesterday, and a forecast body for tomorrow
    (every user reached, capped at 3 a day)."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    rows = [
        SampledRequest(yesterday.replace(hour=h).timestamp(), f"u{i}", {"device": "tv"},
                       None, 1, (), 1.0)
        for i in range(40) for h in range(4)
    ]  # fmt: skip
    ParquetRequestStore(container_of(app).settings.requests_dir).write(rows)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"targeting": "", "start": (start + timedelta(days=1)).isoformat(),
            "end": (start + timedelta(days=2)).isoformat(), "priority": 1, "bid_cpm": 2.0,
            "frequency_cap": {"count": 3, "window_seconds": 86400}}  # fmt: skip


def _in_process_then_split(
    client: TestClient, body: dict, monkeypatch: pytest.MonkeyPatch, module: Any, min_rows: str
) -> list[dict]:
    """The forecast of ``body`` made in process (one core), then split across 2 processes
    (``module.<min_rows>`` at 1): both answers, their ``replay_processes`` checked and
    their times dropped."""
    answers = []
    for rows, cores in ((10**9, 1), (1, 2)):
        monkeypatch.setattr(module, min_rows, rows)
        monkeypatch.setattr(module, "_cores", lambda cores=cores: cores)
        r = client.post("/v1/forecast", json=body)
        assert r.status_code == 200, r.text
        answers.append(r.json())
    assert [a.pop("replay_processes") for a in answers] == [1, 2]
    for a in answers:
        a.pop("elapsed_ms")
    return answers


def test_a_forecast_split_across_processes_from_the_server_answers_alike(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay forked from a worker thread of the serving app (its event loop running in
    another thread) answers as the one replayed in process."""
    import adtarget.decision.forecast_replay as forecast_module

    client = TestClient(app)
    seeded = _seed(client)  # its campaign's budget is checked across the parts
    body = _logged_yesterday(app)
    answers = _in_process_then_split(client, body, monkeypatch, forecast_module,
                                     "PARALLEL_MIN_ROWS")  # fmt: skip
    assert answers[0] == answers[1]
    assert answers[0]["forecast_impressions"] == 120
    taken = {c["line_item_id"]: c for c in answers[0]["contended"]}
    assert taken[seeded["line_item"]["id"]]["impressions_taken_from_it"] == 120


def test_a_forecast_split_by_user_from_the_server_answers_alike(
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
    forks: list[int],  # noqa: F811
) -> None:
    """The whole forecast split by user (``forecast_split``), forked from a worker thread of
    the serving app, its profiles read through the snapshot store's ``fork_reader``: the
    same answer as in process."""
    import adtarget.decision.forecast_split as split_module

    client = TestClient(app)
    _seed(client)
    body = _logged_yesterday(app)
    answers = _in_process_then_split(client, body, monkeypatch, split_module, "MIN_ROWS")
    assert forks == [2]
    assert answers[0] == answers[1] and answers[0]["forecast_impressions"] == 120
