"""``POST /v1/uploads`` and ``GET /v1/uploads/{id}`` through the real app (TestClient)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from adtarget.api.app import create_app
from adtarget.api.routes import uploads
from adtarget.audience.store import SnapshotStore
from adtarget.settings import Settings

from .conftest import write_csv

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADMIN = {"Authorization": "Bearer root-key"}


@pytest.fixture
def client(settings: Settings, started: Callable[..., TestClient]) -> TestClient:
    s = settings.model_copy(update={"admin_key": "root-key"})
    app: FastAPI = create_app(s)
    if not any(getattr(r, "path", "") == "/v1/uploads" for r in app.routes):
        app.include_router(uploads.router)  # until the lead wires it into create_app
    return started(app, raise_server_exceptions=False)


def _wait(client: TestClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = client.get(f"/v1/uploads/{job_id}", headers=ADMIN).json()
        if job["status"] in ("succeeded", "failed"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError("job did not finish")


def test_multipart_upload_runs_in_background(client: TestClient, settings: Settings) -> None:
    body = b"user_id,country\nu1,US\nu2,CA\nu3,\n"
    res = client.post(
        "/v1/uploads",
        headers=ADMIN,
        files={"file": ("pop.csv", body, "text/csv")},
        data={"mode": "replace", "schema": '{"country": "category"}'},
    )
    assert res.status_code == 202, res.text
    assert set(res.json()) >= {"id", "status"}
    job = _wait(client, res.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    for key in ("rows_read", "rows_accepted", "rows_rejected", "quarantine", "snapshot"):
        assert key in job
    assert (job["rows_read"], job["rows_accepted"]) == (3, 3)
    assert SnapshotStore(settings.snapshots_dir).current_version() == job["snapshot"]
    assert Path(job["source_path"]).is_relative_to(settings.uploads_dir.resolve())


def test_json_path_upload_segment_dry_run(client: TestClient, tmp_path: Path) -> None:
    pop = write_csv(tmp_path / "pop.csv", "user_id,country", "u1,US", "u2,CA")
    first = client.post(
        "/v1/uploads", headers=ADMIN, json={"path": str(pop), "schema": {"country": "category"}}
    )
    assert _wait(client, first.json()["id"])["status"] == "succeeded"
    seg = write_csv(tmp_path / "seg.csv", "user_id", "u1", "zz")
    res = client.post(
        "/v1/uploads",
        headers=ADMIN,
        json={"path": str(seg), "mode": "segment", "segment": "vip", "dry_run": True},
    )
    job = _wait(client, res.json()["id"])
    assert job["status"] == "succeeded" and job["snapshot"] is None
    assert job["report"]["match_rate"] == 0.5
    assert job["report"]["diff"]["segments"]["vip"] == {"before": 0, "after": 1, "delta": 1}


def test_errors(client: TestClient, tmp_path: Path) -> None:
    assert client.get("/v1/uploads/nope", headers=ADMIN).status_code == 404
    res = client.post("/v1/uploads", headers=ADMIN, json={"path": str(tmp_path / "x.csv")})
    assert res.status_code == 422 and res.json()["error"]["field"] == "path"
    res = client.post("/v1/uploads", headers=ADMIN, json={"mode": "replace"})
    assert res.status_code == 422
    pop = write_csv(tmp_path / "pop.csv", "user_id", "u1")
    res = client.post("/v1/uploads", headers=ADMIN, json={"path": str(pop), "mode": "merge"})
    assert res.status_code == 422 and res.json()["error"]["field"] == "mode"
    res = client.post("/v1/uploads", json={"path": str(pop)})
    assert res.status_code == 401


def test_same_file_posted_twice_runs_once(client: TestClient, settings: Settings) -> None:
    """A retried POST joins the first job (queued, running or done): one job, one version."""
    body = b"user_id,country\n" + b"".join(b"u%d,US\n" % i for i in range(20_000))
    form = {"mode": "replace", "schema": '{"country": "category"}'}
    ids = []
    for _ in range(2):
        res = client.post(
            "/v1/uploads", headers=ADMIN, files={"file": ("pop.csv", body, "text/csv")}, data=form
        )
        assert res.status_code == 202, res.text
        ids.append(res.json()["id"])
    assert ids[0] == ids[1]
    job = _wait(client, ids[0])
    assert job["status"] == "succeeded", job["error"]
    assert SnapshotStore(settings.snapshots_dir).versions() == [job["snapshot"]]
