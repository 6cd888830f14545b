"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from adtarget.api.app import create_app
from adtarget.settings import Settings


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_each_check(app: FastAPI) -> None:
    with TestClient(app) as client:  # the lifespan builds the engine and its index
        resp = client.get("/readyz")
    assert resp.status_code == 200, resp.text
    checks = resp.json()["checks"]
    assert checks["catalog"]["ok"] and checks["index"]["ok"]
    assert checks["snapshot"] == {"ok": True, "version": None}


def test_readyz_is_503_when_the_catalog_is_unreachable(
    settings: Settings, started: Callable[..., TestClient]
) -> None:
    app = create_app(
        settings.model_copy(update={"catalog_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    )
    resp = started(app).get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"]["catalog"]["ok"] is False


def test_metrics_and_shed_counter_are_exposed(client: TestClient) -> None:
    text = client.get("/metrics").text
    for name in (
        "adtarget_http_request_duration_seconds",
        "adtarget_decisions_total",
        "adtarget_decisions_degraded_total",
        "adtarget_requests_shed_total",
    ):
        assert f"# TYPE {name}" in text


def test_openapi_documents_the_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/decisions",
        "/v1/advertisers",
        "/v1/campaigns/{obj_id}",
        "/v1/line-items",
        "/v1/line-items/{line_item_id}/creatives",
        "/v1/segments",
        "/v1/dimensions",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    assert "post" in paths["/v1/decisions"] and "patch" in paths["/v1/line-items/{obj_id}"]


def test_readyz_details_only_for_keys_that_read(
    client: TestClient, make_key: Callable[..., str]
) -> None:
    admin = make_key("admin")
    anon = client.get("/readyz").json()
    assert "worker" not in anon and "path" not in str(anon)
    assert all(set(c) == {"ok"} for c in anon["checks"].values())
    advertiser_free = client.get("/readyz", headers={"Authorization": "Bearer nope"}).json()
    assert "worker" not in advertiser_free
    full = client.get("/readyz", headers={"Authorization": f"Bearer {admin}"}).json()
    assert "worker" in full and full["checks"]["profiles"]["ok"] is True
