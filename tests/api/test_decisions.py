"""``POST /v1/decisions`` end to end through the real engine, field checks, deadline, metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from adtarget.api.app import create_app
from adtarget.api.container import container_of
from adtarget.api.decision_service import DecisionService
from adtarget.decision.models import DecisionRequest, DecisionResult
from adtarget.settings import Settings

from .conftest import make_live

Seed = Callable[..., dict[str, Any]]
API_MD_FIELDS = ("line_item_id", "campaign_id", "creative_id", "priority", "bid_cpm")
FLIGHT = {"start": "2026-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}


@pytest.fixture
def live(client: TestClient, app: FastAPI) -> dict[str, Any]:
    """Two active line items (US priority 1, anyone priority 3), each with a creative."""
    made = make_live(client, [("us", 'country = "US"', 1), ("all", "", 3)])
    container_of(app).decisions.engine.index_holder.refresh()
    return made


def test_ranked_decisions_with_api_md_fields(client: TestClient, live: dict[str, Any]) -> None:
    resp = client.post(
        "/v1/decisions", json={"user_id": "u1", "context": {"country": "US"}, "limit": 5}
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["degraded"] is False and "snapshot" in body
    assert [d["line_item_id"] for d in body["decisions"]] == [live["us"]["id"], live["all"]["id"]]
    first = body["decisions"][0]
    assert {k: first[k] for k in API_MD_FIELDS} == {
        "line_item_id": live["us"]["id"],
        "campaign_id": live["campaign"]["id"],
        "creative_id": live["creative"]["id"],
        "priority": 1,
        "bid_cpm": 2.0,
    }
    # playable (API.md, ad breaks and tracking): the creative as registered, signed beacons
    assert first["creative"]["id"] == live["creative"]["id"]
    assert first["creative"]["format"] == live["creative"]["format"]
    assert first["creative"]["attributes"] == live["creative"].get("attributes", {})
    assert len({d["decision_id"] for d in body["decisions"]}) == 2
    assert set(first["tracking"]) == {
        "impression", "start", "first_quartile", "midpoint", "third_quartile", "complete", "click"
    }  # fmt: skip
    assert all(u.startswith("/v1/track/") for u in first["tracking"].values())
    one = client.post("/v1/decisions", json={"user_id": "u1", "context": {"country": "FR"}})
    assert [d["line_item_id"] for d in one.json()["decisions"]] == [live["all"]["id"]]


def test_explain_names_the_failed_predicate(client: TestClient, live: dict[str, Any]) -> None:
    resp = client.post(
        "/v1/decisions",
        json={"user_id": "u1", "context": {"country": "FR"}, "explain": True, "limit": 5},
    )
    first = resp.json()["explain"]["not_served"][0]
    assert (first["line_item_id"], first["reason"]) == (live["us"]["id"], "targeting")


def test_format_filter(client: TestClient, live: dict[str, Any]) -> None:
    resp = client.post("/v1/decisions", json={"user_id": "u", "formats": ["display_banner"]})
    assert resp.status_code == 200 and resp.json()["decisions"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "user_id"),
        ({"user_id": 1.5}, "user_id"),
        ({"user_id": "u", "context": []}, "context"),
        ({"user_id": "u", "context": {"a": {"b": 1}}}, "context.a"),
        ({"user_id": "u", "limit": "2"}, "limit"),
        ({"user_id": "u", "limit": 0}, "limit"),
        ({"user_id": "u", "limit": True}, "limit"),
        ({"user_id": "u", "formats": "video_15s"}, "formats"),
        ({"user_id": "u", "formats": ["video_15s", "hologram"]}, "formats[1]"),
        ({"user_id": "u", "explain": "yes"}, "explain"),
        ([1, 2], "body"),
    ],
)
def test_bad_fields_are_422_naming_them(client: TestClient, body: Any, field: str) -> None:
    resp = client.post("/v1/decisions", json=body)
    assert resp.status_code == 422
    assert resp.json()["error"]["field"] == field


def test_malformed_json_and_huge_body(client: TestClient, app: FastAPI) -> None:
    bad = client.post(
        "/v1/decisions", content=b'{"user_id": ', headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    limit = app.state.settings.max_body_bytes
    huge = client.post("/v1/decisions", content=b" " * (limit + 1))
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"


class SlowEngine:
    """An engine stuck until released (like a Redis call hanging past the deadline)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def decide(self, request: DecisionRequest, now: Any = None) -> DecisionResult:
        self.release.wait(10)
        return DecisionResult(decisions=[], snapshot="v-late")


def test_deadline_answers_degraded_instead_of_late(app: FastAPI) -> None:
    engine = SlowEngine()
    container_of(app).replace_decisions(DecisionService(engine, inline=False))
    try:
        with TestClient(app) as client:
            resp = client.post(
                "/v1/decisions", json={"user_id": "u"}, headers={"X-Request-Deadline-Ms": "30"}
            )
            # The answer came while the engine was still stuck: the route did not wait for it.
            assert not engine.release.is_set()
            assert resp.status_code == 200
            assert resp.json() == {"decisions": [], "snapshot": None, "degraded": True}
            engine.release.set()
    finally:
        engine.release.set()


class BrokenEngine:
    def decide(self, request: DecisionRequest, now: Any = None) -> DecisionResult:
        raise RuntimeError("bug")


def test_engine_failure_is_degraded_never_500(app: FastAPI, client: TestClient) -> None:
    container_of(app).replace_decisions(DecisionService(BrokenEngine()))
    resp = client.post("/v1/decisions", json={"user_id": "u"})
    assert resp.status_code == 200 and resp.json()["degraded"] is True


def test_metrics_count_decisions_and_latency(client: TestClient, live: dict[str, Any]) -> None:
    def sample(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    before = client.get("/metrics").text
    client.post("/v1/decisions", json={"user_id": "u", "context": {"country": "US"}, "limit": 2})
    after = client.get("/metrics").text
    total = "adtarget_decisions_total"
    assert sample(after, total) == sample(before, total) + 1
    assert sample(after, "adtarget_decisions_served_total") == (
        sample(before, "adtarget_decisions_served_total") + 2
    )
    count = 'adtarget_http_request_duration_seconds_count{method="POST",route="/v1/decisions"'
    assert count in after


def test_metrics_say_how_long_index_rebuilds_take_and_how_fresh(
    client: TestClient, app: FastAPI, live: dict[str, Any]
) -> None:
    def sample(text: str, prefix: str) -> float:
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        raise AssertionError(f"{prefix} not in /metrics")

    ok = 'adtarget_index_rebuild_seconds_count{result="ok"}'
    before = sample(client.get("/metrics").text, ok)
    started = time.time()
    container_of(app).decisions.engine.index_holder.refresh()
    text = client.get("/metrics").text
    assert sample(text, ok) == before + 1
    assert sample(text, "adtarget_index_line_items ") == 2  # the fixture's two live items
    assert sample(text, "adtarget_index_built_timestamp_seconds ") >= started


def test_shedding_covers_the_fast_path_and_the_rest(
    settings: Settings, started: Callable[..., TestClient]
) -> None:
    """One guard per app: a stuck decision fills max_inflight=1, then any route gets 503."""
    app = create_app(settings.model_copy(update={"max_inflight": 1}))
    started(app)
    engine = SlowEngine()
    container_of(app).replace_decisions(DecisionService(engine, inline=False))

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            stuck = asyncio.create_task(
                c.post(
                    "/v1/decisions",
                    json={"user_id": "u"},
                    headers={"X-Request-Deadline-Ms": "5000"},
                )
            )
            while app.guard.inflight < 1:  # type: ignore[attr-defined]
                await asyncio.sleep(0.001)
            for method, path in (("POST", "/v1/decisions"), ("GET", "/v1/advertisers")):
                shed = await c.request(method, path, json={"user_id": "u"})
                assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
                assert shed.json()["error"]["code"] == "overloaded"
            assert (await c.get("/healthz")).status_code == 200
            engine.release.set()
            assert (await stuck).status_code == 200

    try:
        asyncio.run(scenario())
    finally:
        engine.release.set()


def test_a_catalog_write_reaches_this_workers_decisions_without_waiting_for_the_poll(
    client: TestClient, app: FastAPI, live: dict[str, Any]
) -> None:
    holder = container_of(app).decisions.engine.index_holder
    holder.start()  # the poll thread, as in a served worker
    holder.poll_seconds = 3600.0  # only a wake can make it look before the test gives up
    body = {"user_id": "u", "context": {"country": "US"}, "limit": 5}
    served = [
        d["line_item_id"] for d in client.post("/v1/decisions", json=body).json()["decisions"]
    ]
    assert live["us"]["id"] in served
    paused = client.patch(f"/v1/line-items/{live['us']['id']}", json={"status": "paused"})
    assert paused.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = client.post("/v1/decisions", json=body).json()["decisions"]
        if live["us"]["id"] not in [d["line_item_id"] for d in answer]:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the paused line item was still served 10 s after the write")
