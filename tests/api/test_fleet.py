"""Two ``adtarget serve`` processes on one PostgreSQL catalog (the documented multi-node shape):
a line item made live through one is served by the other, and a pause through one stops it
serving on the other within moments — by the change log's ``NOTIFY``, not the safety-net poll
(set to a minute here) nor the periodic rebuild (an hour).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving import wait_until_serving

from .conftest import make_live
from .test_serve import CLI, env_for, free_port

pytestmark = pytest.mark.postgres

H = {"Authorization": "Bearer k-admin"}
ASK = {"user_id": "u1", "context": {"country": "US"}, "limit": 5}


def _serve(tmp_path: Path, name: str, catalog_url: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = env_for(
        tmp_path / name,
        ADTARGET_ADMIN_KEY="k-admin",
        ADTARGET_CATALOG_URL=catalog_url,
        ADTARGET_INDEX_POLL_SECONDS="60",
        ADTARGET_INDEX_CHECK_SECONDS="3600",
        ADTARGET_INDEX_FREEZE_GC="false",
    )
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return f"http://127.0.0.1:{port}", proc


def _ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    wait_until_serving(base, proc, path="/readyz")


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str) -> Iterator[list[str]]:
    nodes = [_serve(tmp_path, name, pg_url) for name in ("node-a", "node-b")]
    try:
        for base, proc in nodes:
            _ready(base, proc)
        yield [base for base, _ in nodes]
    finally:
        for _, proc in nodes:
            proc.terminate()
        for _, proc in nodes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _served(client: httpx.Client) -> list[int]:
    resp = client.post("/v1/decisions", json=ASK)
    assert resp.status_code == 200, resp.text
    return [d["line_item_id"] for d in resp.json()["decisions"]]


def _until(client: httpx.Client, want: Any, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while _served(client) != want:
        assert time.monotonic() - started < timeout, f"not {want} after {timeout} s"
        time.sleep(0.005)
    return time.monotonic() - started


def test_a_pause_through_one_node_stops_serving_on_the_other(fleet: list[str]) -> None:
    a, b = (httpx.Client(base_url=base, headers=H, timeout=10) for base in fleet)
    with a, b:
        made = make_live(a, [("us", 'country = "US"', 1)])  # type: ignore[arg-type]
        li = made["us"]["id"]
        _until(b, [li])  # created and activated on node A: served on node B
        paused = a.patch(f"/v1/line-items/{li}", json={"status": "paused"})
        assert paused.status_code == 200, paused.text
        took = _until(b, [])
        assert took < 2.0  # far below the 60 s poll: the NOTIFY carried it
        resumed = a.post("/v1/commands/undo")
        assert resumed.status_code == 200, resumed.text
        _until(b, [li])  # undo is a change like any other
