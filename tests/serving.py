"""Starting a real ``adtarget serve`` in tests: one place for the free port and the wait for it.

Five suites start the server as a user would (a subprocess on a loopback port); each had its own
copy of the same polling loop, with different ideas of what a failed start should say.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(
    base: str,
    proc: subprocess.Popen[bytes],
    *,
    path: str = "/healthz",
    timeout: float = 120.0,
    log: Path | None = None,
) -> None:
    """Poll ``base + path`` until it answers 200; fail with the server's own words if it dies.

    ``log`` is the file the server writes to; otherwise its piped stderr is read, if any.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            if log is not None:
                said = log.read_text(errors="replace")
            elif proc.stderr is not None and proc.poll() is not None:
                said = proc.stderr.read().decode(errors="replace")
            else:
                said = "(no output captured)"
            state = "exited" if proc.poll() is not None else f"not ready after {timeout:.0f} s"
            raise RuntimeError(f"adtarget serve {state}:\n{said[-3000:]}")
        time.sleep(0.2)


def seed_line_item(client: Any) -> dict[str, Any]:
    """An advertiser, a campaign and one line item on ``country = "US"`` (the dimension must
    exist), for tests that need the catalog's routes to find real objects; ``client`` is an
    ``httpx.Client`` or a Starlette ``TestClient`` already carrying an admin key. Answers the
    advertiser."""
    adv = client.post("/v1/advertisers", json={"name": "acme"})
    adv.raise_for_status()
    camp = client.post(
        "/v1/campaigns",
        json={
            "advertiser_id": adv.json()["id"],
            "name": "c",
            "budget_total": 100,
            "start": "2026-01-01T00:00:00Z",
            "end": "2030-01-01T00:00:00Z",
        },
    )
    camp.raise_for_status()
    client.post(
        "/v1/line-items",
        json={
            "campaign_id": camp.json()["id"],
            "name": "li",
            "targeting": 'country = "US"',
            "priority": 1,
            "bid_cpm": 1,
        },
    ).raise_for_status()
    return dict(adv.json())
