"""Schemathesis against a live ``adtarget serve``: every answer keeps the published contract.

Why a real process and not the ASGI app (``test_fuzz.py``): the hand-parsed routes (uploads as
multipart or JSON, event batches, profile updates) read raw bytes and streams, and the raw ASGI
routes answer without FastAPI; only a socket sees exactly what a client sees. Bounded: a few
examples per operation, derandomized, so the run is the same every time and takes seconds.

Checks: no 5xx, every status published for its route, the content type and the body of every
answer valid against the published schema (the error body included).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.api.test_serve import CLI, env_for

from serving import free_port, seed_line_item, wait_until_serving

ADMIN = "k-live-admin"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: The hand-parsed routes whose bodies are published by ``api/openapi_bodies.py``.
BODY_ROUTES = {
    ("POST", "/v1/uploads"),
    ("GET", "/v1/uploads/{job_id}"),
    ("POST", "/v1/events"),
    ("POST", "/v1/profiles/updates"),
}
#: The routes added last: hand-parsed or raw ASGI too (VAST, pods in decisions, forecasts).
NEWER_ROUTES = {("GET", "/v1/vast"), ("POST", "/v1/decisions"), ("POST", "/v1/forecast")}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[str]:
    """``adtarget serve`` on a fresh data dir with an admin key and a little catalog."""
    data = tmp_path / "data"
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=env_for(data, ADTARGET_ADMIN_KEY=ADMIN),
        stdout=subprocess.DEVNULL,
        stderr=(log := (tmp_path / "serve.log").open("wb")),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, proc, log=tmp_path / "serve.log")
        _seed(base, tmp_path)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def _seed(base: str, tmp: Path) -> None:
    h = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=base, headers=h, timeout=30) as c:
        c.post("/v1/dimensions", json={"name": "country", "type": "category"}).raise_for_status()
        users = tmp / "users.csv"
        users.write_text("user_id,country\n" + "".join(f"u{i},US\n" for i in range(50)))
        job = c.post("/v1/uploads", json={"path": str(users)}).json()
        for _ in range(100):
            if c.get(f"/v1/uploads/{job['id']}").json()["status"] in ("succeeded", "failed"):
                break
        seed_line_item(c)


def _run(base: str, selected: Any) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not selected(operation.method.upper(), operation.path):
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            try:
                case.call_and_validate(
                    base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}, checks=CHECKS
                )
            except Exception as exc:  # a failed check, or the connection broke
                body = case.body if not isinstance(case.body, bytes) else case.body[:200]
                failures.append(
                    f"{case.method} {case.formatted_path} query={case.query} body={body!r}: "
                    f"{str(exc)[:600]}"
                )

        check()
    return failures


def test_hand_parsed_bodies_keep_the_contract_live(live: str) -> None:
    failures = _run(live, lambda method, path: (method, path) in BODY_ROUTES)
    assert not failures, "\n\n".join(failures[:8])


def test_newer_routes_keep_the_contract_live(live: str) -> None:
    failures = _run(live, lambda method, path: (method, path) in NEWER_ROUTES)
    assert not failures, "\n\n".join(failures[:8])
