"""One error shape everywhere: typed errors, validation (field paths), bad JSON, unknown routes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from adtarget.api.errors import json_path

FLIGHT = {"start": "2026-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}


def test_json_path_drops_the_location_root() -> None:
    assert json_path(("body", "frequency_cap", "count")) == "frequency_cap.count"
    assert json_path(("body", "formats", 2)) == "formats[2]"
    assert json_path(("query", "limit")) == "limit"
    assert json_path(("body",)) == "body"


def test_not_found_shape(client: TestClient) -> None:
    resp = client.get("/v1/campaigns/4242")
    assert resp.status_code == 404
    assert resp.json() == {
        "error": {"code": "not_found", "message": "campaign 4242 does not exist", "field": "id"}
    }


def test_validation_error_names_the_nested_field(client: TestClient) -> None:
    adv = client.post("/v1/advertisers", json={"name": "acme"}).json()
    camp = client.post(
        "/v1/campaigns", json={"advertiser_id": adv["id"], "name": "c", "budget_total": 5, **FLIGHT}
    ).json()
    resp = client.post(
        "/v1/line-items",
        json={
            "campaign_id": camp["id"],
            "name": "li",
            "targeting": "",
            "priority": 1,
            "bid_cpm": 1,
            "frequency_cap": {"count": "many", "window_seconds": 60},
        },
    )
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "invalid_value" and err["field"] == "frequency_cap.count"
    prio = client.post(
        "/v1/line-items",
        json={
            "campaign_id": camp["id"],
            "name": "li",
            "targeting": "",
            "priority": 99,
            "bid_cpm": 1,
        },
    )
    assert prio.status_code == 422 and prio.json()["error"]["field"] == "priority"
    extra = client.post("/v1/advertisers", json={"name": "x", "colour": "red"})
    assert extra.status_code == 422 and extra.json()["error"]["field"] == "colour"


def test_rule_errors_point_at_the_token(client: TestClient) -> None:
    adv = client.post("/v1/advertisers", json={"name": "acme"}).json()
    camp = client.post(
        "/v1/campaigns", json={"advertiser_id": adv["id"], "name": "c", "budget_total": 5, **FLIGHT}
    ).json()
    resp = client.post(
        "/v1/line-items",
        json={
            "campaign_id": camp["id"],
            "name": "li",
            "targeting": "country in (",
            "priority": 1,
            "bid_cpm": 1,
        },
    )
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["field"] == "targeting" and err["code"].startswith("rule_")
    assert err["column"] >= 1


def test_malformed_json_is_400(client: TestClient) -> None:
    resp = client.post(
        "/v1/advertisers", content=b'{"name": "x"', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_json"


def test_invalid_transition_and_duplicates_are_4xx(client: TestClient) -> None:
    adv = client.post("/v1/advertisers", json={"name": "acme"}).json()
    camp = client.post(
        "/v1/campaigns", json={"advertiser_id": adv["id"], "name": "c", "budget_total": 5, **FLIGHT}
    ).json()
    client.patch(f"/v1/campaigns/{camp['id']}", json={"status": "archived"})
    back = client.patch(f"/v1/campaigns/{camp['id']}", json={"status": "active"})
    assert back.status_code == 422 and back.json()["error"]["code"] == "invalid_transition"
    dup = client.post("/v1/advertisers", json={"name": "acme"})
    assert dup.status_code == 409


def test_unknown_route_and_method_keep_the_shape(client: TestClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    method = client.delete("/v1/advertisers")
    assert method.status_code == 405
    assert method.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("method", ["DELETE", "PUT", "OPTIONS"])
def test_405_allow_names_every_method_of_the_path(client: TestClient, method: str) -> None:
    """FastAPI's router named only the first matching route's method (``Allow: GET``)."""
    resp = client.request(method, "/v1/advertisers")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, HEAD, POST"  # HEAD: the GET without a body
    one = client.request(method, "/v1/forecast")  # a path with one method
    assert one.status_code == 405 and one.headers["allow"] == "POST"


def test_empty_patch_is_422(client: TestClient) -> None:
    adv = client.post("/v1/advertisers", json={"name": "acme"}).json()
    resp = client.patch(f"/v1/advertisers/{adv['id']}", json={})
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "body"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/v1/advertisers", "/v1/me"])
def test_head_answers_as_get_without_a_body(client: TestClient, path: str) -> None:
    """``HEAD`` on a ``GET`` route was a 405; now the GET's status and headers, no body."""
    client.post("/v1/advertisers", json={"name": "acme"})
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == 200, head.text
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path != "/metrics":  # metrics move between the two calls
        assert head.headers["content-length"] == got.headers["content-length"]


def test_head_is_still_405_where_get_is_not_served(client: TestClient) -> None:
    resp = client.head("/v1/forecast")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
