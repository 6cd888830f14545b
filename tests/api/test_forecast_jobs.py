"""``POST /v1/forecast`` with ``"async": true``: a job with progress, polled until its answer."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.api.test_forecast_route import _seed

from adtarget.api.app import create_app
from adtarget.api.container import container_of
from adtarget.decision.forecast_jobs import ForecastJobs
from adtarget.decision.request_store import ParquetRequestStore, SampledRequest
from adtarget.errors import InvalidValue
from adtarget.settings import Settings


@pytest.fixture
def app(settings: Settings, started: Callable[..., TestClient]) -> FastAPI:
    app = create_app(settings.model_copy(update={"request_log_sample_rate": 0.0}))
    started(app)
    return app


def _body() -> dict[str, Any]:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "targeting": "",
        "start": (start + timedelta(days=1)).isoformat(),
        "end": (start + timedelta(days=3)).isoformat(),
        "priority": 1,
        "bid_cpm": 2.0,
        "frequency_cap": {"count": 2, "window_seconds": 86400},
    }


def _log(app: FastAPI, users: int = 40) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    rows = [
        SampledRequest(yesterday.replace(hour=h).timestamp(), f"u{i}", {"device": "tv"},
                       None, 1, (), 1.0)
        for i in range(users) for h in range(3)
    ]  # fmt: skip
    ParquetRequestStore(container_of(app).settings.requests_dir).write(rows)


def _wait(client: TestClient, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_an_async_forecast_is_a_job_with_progress_and_the_same_answer(app: FastAPI) -> None:
    client = TestClient(app)
    _seed(client)
    _log(app)
    body = _body()
    sync = client.post("/v1/forecast", json=body)
    assert sync.status_code == 200, sync.text
    r = client.post("/v1/forecast", json={**body, "async": True})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "done")
    assert r.headers["location"] == job["status_url"] == f"/v1/forecast/jobs/{job['id']}"
    assert "owner" not in job and "pid" not in job
    done = _wait(client, job["status_url"])
    assert done["status"] == "done", done
    assert done["progress"]["fraction"] == 1.0
    assert {"matching users", "replaying"} <= set(done["progress"]["stages_seen"])
    expected = {k: v for k, v in sync.json().items() if k != "elapsed_ms"}
    got = {k: v for k, v in done["result"].items() if k != "elapsed_ms"}
    assert got == expected
    assert got["forecast_impressions"] == 160  # 40 users, capped at 2 a day, 2 days


def test_async_bodies_are_validated_before_a_job_starts(app: FastAPI) -> None:
    client = TestClient(app)
    r = client.post("/v1/forecast", json={**_body(), "async": "yes"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "async"
    r = client.post("/v1/forecast", json={**_body(), "targeting": "country = ", "async": True})
    assert r.status_code == 422 and r.json()["error"]["field"] == "targeting"
    r = client.get("/v1/forecast/jobs/0123456789abcdef")
    assert r.status_code == 404 and r.json()["error"]["field"] == "job_id"
    assert client.get("/v1/forecast/jobs/..%2Fx").status_code == 404


def test_only_the_key_that_asked_reads_its_job(app: FastAPI, make_key: Callable[..., str]) -> None:
    client = TestClient(app)
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    mine = {"Authorization": f"Bearer {make_key('reader')}"}
    other = {"Authorization": f"Bearer {make_key('reader')}"}
    r = client.post("/v1/forecast", json={**_body(), "async": True}, headers=mine)
    assert r.status_code == 202, r.text
    url = r.json()["status_url"]
    assert _wait(client, url, mine)["status"] == "done"  # no history: done, and says so
    assert client.get(url, headers=mine).json()["result"]["no_history"] is True
    assert client.get(url, headers=other).status_code == 404
    assert client.get(url, headers=admin).status_code == 200


def test_a_failed_run_and_a_lost_process_end_the_job(tmp_path) -> None:
    jobs = ForecastJobs(tmp_path)

    def bad(progress: Any) -> dict[str, Any]:
        raise InvalidValue("no such thing", field="targeting")

    job = jobs.submit(bad, owner="t")
    deadline = time.monotonic() + 10
    while (got := jobs.get(job["id"])) is not None and got["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert got is not None and got["status"] == "failed"
    assert got["error"]["code"] == "invalid_value" and got["error"]["field"] == "targeting"
    # a job left "running" by a process that is gone
    path = tmp_path / f"{job['id']}.json"
    text = path.read_text().replace('"status":"failed"', '"status":"running"')
    dead = 2**22 + 12345  # above the kernel's default pid_max: no such process
    path.write_text(text.replace(f'"pid":{os.getpid()}', f'"pid":{dead}'))
    lost = jobs.get(job["id"])
    assert lost is not None and lost["status"] == "failed"
    assert lost["error"]["code"] == "job_lost"
