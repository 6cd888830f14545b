"""A node whose snapshot directory is missing, although the catalog says one is live, answers
degraded and reports not ready: it never serves ``country not in ("CA")`` to a Canadian."""

from __future__ import annotations

import shutil
import time
from typing import Any

from fastapi.testclient import TestClient

from adtarget.api.app import create_app
from adtarget.api.container import container_of
from adtarget.settings import Settings

from .conftest import make_live


def _upload(client: TestClient, body: bytes) -> dict[str, Any]:
    res = client.post(
        "/v1/uploads",
        files={"file": ("pop.csv", body, "text/csv")},
        data={"mode": "replace", "schema": '{"country": "category"}'},
    )
    assert res.status_code == 202, res.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/uploads/{res.json()['id']}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.02)
    raise AssertionError("upload did not finish")


def _not_canada(client: TestClient) -> None:
    make_live(client, [("not-ca", 'country not in ("CA")', 1)])


def _decide(client: TestClient, user: str) -> dict[str, Any]:
    resp = client.post("/v1/decisions", json={"user_id": user, "limit": 3})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_a_node_started_without_the_live_snapshot_is_degraded_not_wrong(
    settings: Settings,
) -> None:
    first = create_app(settings)
    with TestClient(first, raise_server_exceptions=False) as client:
        assert _upload(client, b"user_id,country\nu_ca,CA\nu_us,US\n")["status"] == "succeeded"
        _not_canada(client)
        container_of(first).decisions.engine.index_holder.refresh()
        assert _decide(client, "u_ca")["decisions"] == []
        assert len(_decide(client, "u_us")["decisions"]) == 1

    shutil.rmtree(settings.snapshots_dir)  # storage lost or not mounted on the next start
    second = create_app(settings)
    with TestClient(second, raise_server_exceptions=False) as client:
        container_of(second).decisions.engine.index_holder.refresh()
        answer = _decide(client, "u_ca")
        assert answer["degraded"] is True and answer["decisions"] == []
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["snapshot"] == {
            "ok": False,
            "error": "missing",
            "expected": "v000001",
        }


def test_before_any_upload_context_only_matching_is_right_and_ready(
    settings: Settings,
) -> None:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        _not_canada(client)
        container_of(app).decisions.engine.index_holder.refresh()
        answer = _decide(client, "anyone")
        assert answer["degraded"] is False and len(answer["decisions"]) == 1
        assert client.get("/readyz").status_code == 200
