"""``POST /v1/decisions`` with a ``pod``: an ad break from a real catalog over HTTP, its checks,
the request log keeping the pod, and the plain request unchanged beside it."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI

from adtarget.api.app import create_app
from adtarget.api.container import container_of
from adtarget.api.decision_service import DecisionService
from adtarget.decision.forecast_window import DayPlan, replay_table, rows_of
from adtarget.decision.models import DecisionRequest, DecisionResult, PodSpec
from adtarget.decision.pods import replayed_pod
from adtarget.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

FLIGHT = {"start": "2026-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}


def _advertiser(
    client: TestClient,
    name: str,
    *,
    category: str | None,
    seconds: list[int],
    priority: int,
    campaign_category: str | None = None,
) -> dict[str, Any]:
    """An active advertiser/campaign with one active line item per creative duration."""
    adv = client.post("/v1/advertisers", json={"name": name, "category": category}).json()
    camp = client.post(
        "/v1/campaigns",
        json={
            "advertiser_id": adv["id"],
            "name": f"{name}-c",
            "budget_total": 1000,
            "category": campaign_category,
            **FLIGHT,
        },
    ).json()
    made: dict[str, Any] = {"advertiser": adv, "items": [], "creatives": []}
    for i, sec in enumerate(seconds):
        fmt = "video_15s" if sec <= 15 else "video_30s"
        cr = client.post(
            "/v1/creatives",
            json={
                "advertiser_id": adv["id"],
                "name": f"{name}-{i}",
                "format": fmt,
                "attributes": {"media_url": f"https://cdn.example/{name}{i}.mp4", "duration": sec},
            },
        ).json()
        li = client.post(
            "/v1/line-items",
            json={
                "campaign_id": camp["id"],
                "name": f"{name}-li{i}",
                "targeting": "",
                "priority": priority,
                "bid_cpm": 10 - i,
            },
        ).json()
        assert client.post(
            f"/v1/line-items/{li['id']}/creatives", json={"creative_id": cr["id"]}
        ).is_success
        assert client.patch(f"/v1/line-items/{li['id']}", json={"status": "active"}).is_success
        made["items"].append(li)
        made["creatives"].append(cr)
    assert client.patch(f"/v1/campaigns/{camp['id']}", json={"status": "active"}).is_success
    return made


@pytest.fixture
def pod_app(settings: Settings, started: Callable[..., TestClient]) -> FastAPI:
    app = create_app(settings.model_copy(update={"request_log_sample_rate": 1.0}))
    started(app)
    return app


@pytest.fixture
def breaks(pod_app: FastAPI) -> dict[str, Any]:
    client = TestClient(pod_app)
    made = {
        # two line items of one advertiser: only the first may be in a break
        "ford": _advertiser(client, "ford", category="auto", seconds=[30, 15], priority=1),
        # another auto advertiser: kept out by category
        "kia": _advertiser(client, "kia", category="auto", seconds=[15], priority=2),
        # its campaign's category overrides the advertiser's auto
        "acme": _advertiser(
            client, "acme", category="auto", campaign_category="telecom", seconds=[15], priority=3
        ),
        "nocat": _advertiser(client, "nocat", category=None, seconds=[30], priority=4),
    }
    container_of(pod_app).decisions.engine.index_holder.refresh()
    return made


def _li(made: dict[str, Any], name: str, i: int = 0) -> int:
    return int(made[name]["items"][i]["id"])


def test_a_break_is_filled_in_play_order_with_separation_and_duration(
    pod_app: FastAPI, breaks: dict[str, Any]
) -> None:
    client = TestClient(pod_app)
    resp = client.post(
        "/v1/decisions",
        json={"user_id": "u1", "pod": {"slots": 4, "max_duration": 60}, "explain": True},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    served = [d["line_item_id"] for d in body["decisions"]]
    # ford 30 s, kia skipped (auto), acme 15 s (telecom), nocat 30 s does not fit in 15 s
    assert served == [_li(breaks, "ford"), _li(breaks, "acme")]
    assert body["decisions"][0]["creative_id"] == breaks["ford"]["creatives"][0]["id"]
    assert body["pod"]["filled"] == 2 and body["pod"]["duration"] == 45
    assert [u["slot"] for u in body["pod"]["unfilled"]] == [3, 4]
    reasons = {e["line_item_id"]: e["reason"] for e in body["explain"]["not_served"]}
    assert reasons[_li(breaks, "ford", 1)] == "separation"
    assert reasons[_li(breaks, "kia")] == "separation"
    assert reasons[_li(breaks, "nocat")] == "duration"
    plain = client.post("/v1/decisions", json={"user_id": "u1", "limit": 3}).json()
    assert "pod" not in plain
    assert [d["line_item_id"] for d in plain["decisions"]] == [
        _li(breaks, "ford"),
        _li(breaks, "ford", 1),
        _li(breaks, "kia"),
    ]


def test_the_request_log_keeps_the_pod_for_the_forecast_replay(
    pod_app: FastAPI, breaks: dict[str, Any]
) -> None:
    client = TestClient(pod_app)
    pod = {"slots": 2, "max_duration": 45, "min_duration": 30}
    assert client.post("/v1/decisions", json={"user_id": "u9", "pod": pod}).status_code == 200
    assert client.post("/v1/decisions", json={"user_id": "u9"}).status_code == 200
    container = container_of(pod_app)
    assert container.request_log is not None
    container.request_log.close()  # the writer thread has written every queued row
    today = datetime.now(UTC).date()
    start = datetime.combine(today, datetime.min.time(), UTC)
    table = replay_table(
        container.request_log.store,
        [DayPlan(today, today, True)],
        start,
        start.replace(year=start.year + 1),
    )
    rows = rows_of(table)
    assert [r.limit for r in rows] == [2, 1]
    assert rows[0].pod is not None and rows[1].pod is None
    assert replayed_pod(rows[0].pod) == PodSpec(2, 45.0, 30.0)


@pytest.mark.parametrize(
    ("pod", "field"),
    [
        ({"slots": 0, "max_duration": 30}, "pod.slots"),
        ({"slots": 500, "max_duration": 30}, "pod.slots"),
        ({"slots": 2, "max_duration": -5}, "pod.max_duration"),
        ({"slots": 2, "max_duration": 30, "min_duration": 40}, "pod.min_duration"),
        ({"slots": 2}, "pod.max_duration"),
        ("4x30", "pod"),
    ],
)
def test_bad_pods_are_422_naming_the_field(pod_app: FastAPI, pod: Any, field: str) -> None:
    resp = TestClient(pod_app).post("/v1/decisions", json={"user_id": "u", "pod": pod})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == field


class BrokenEngine:
    def decide(self, request: DecisionRequest, now: Any = None) -> DecisionResult:
        raise RuntimeError("bug")


def test_a_degraded_break_still_says_which_slots_are_empty(pod_app: FastAPI) -> None:
    container_of(pod_app).replace_decisions(DecisionService(BrokenEngine()))
    resp = TestClient(pod_app, raise_server_exceptions=False).post(
        "/v1/decisions", json={"user_id": "u", "pod": {"slots": 2, "max_duration": 30}}
    )
    body = resp.json()
    assert resp.status_code == 200 and body["degraded"] is True and body["decisions"] == []
    assert [(u["slot"], u["reason"]) for u in body["pod"]["unfilled"]] == [
        (1, "degraded"),
        (2, "degraded"),
    ]
