"""``adtarget serve`` and ``adtarget keys`` as a user runs them: real processes, real sockets.

Why subprocesses: ``--workers N`` forks uvicorn workers, the open-mode check runs before
anything binds, and ``keys create`` prints the key once; none of that is visible in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from adtarget.cli.main import app as main_app
from adtarget.settings import get_settings
from serving import free_port, wait_until_serving

CLI = [sys.executable, "-m", "adtarget.cli.main"]


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ADTARGET_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    return {**env, "ADTARGET_DATA_DIR": str(data_dir), **extra}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    """Run ``adtarget ARGS`` in-process on a fresh data dir (no admin env key)."""
    monkeypatch.delenv("ADTARGET_ADMIN_KEY", raising=False)
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(tmp_path))  # --data-dir exports it
    runner = CliRunner()

    def run(*args: str) -> Result:
        result = runner.invoke(main_app, ["--data-dir", str(tmp_path), *args])
        get_settings.cache_clear()
        return result

    yield run
    get_settings.cache_clear()


def test_open_mode_refuses_a_public_address(cli: Callable[..., Result]) -> None:
    result = cli("serve", "--host", "0.0.0.0", "--port", "1")
    assert result.exit_code == 2
    assert "refusing to bind 0.0.0.0: no API key exists" in result.output


def test_keys_cli_creates_lists_and_revokes(cli: Callable[..., Result]) -> None:
    made = cli("keys", "create", "--role", "reader", "--json")
    assert made.exit_code == 0, made.output
    info = json.loads(made.stdout)
    assert info["role"] == "reader" and info["key"].startswith("adt_")
    no_adv = cli("keys", "create", "--role", "advertiser")
    assert no_adv.exit_code == 1 and "needs --advertiser ID" in no_adv.output
    missing = cli("keys", "create", "--role", "advertiser", "--advertiser", "7")
    assert missing.exit_code == 1 and "advertiser 7 does not exist" in missing.output
    bad_role = cli("keys", "create", "--role", "root")
    assert bad_role.exit_code == 1 and "role must be one of" in bad_role.output
    listed = json.loads(cli("keys", "list", "--json").stdout)["keys"]
    assert [k["id"] for k in listed] == [info["id"]] and "key" not in listed[0]
    assert cli("keys", "revoke", str(info["id"])).exit_code == 0
    assert json.loads(cli("keys", "list", "--json").stdout)["keys"] == []
    # The only key is revoked: no live key, so the API would be open again and serve refuses.
    assert cli("serve", "--host", "10.1.2.3", "--port", "1").exit_code == 2


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``adtarget serve --workers 2`` with an env admin key, on a free loopback port."""
    port = free_port()
    env = env_for(tmp_path, ADTARGET_ADMIN_KEY="bootstrap-admin-key")
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, proc)
        yield {
            "base": base,
            "headers": {"Authorization": "Bearer bootstrap-admin-key"},
            "data_dir": tmp_path,
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_workers_share_one_snapshot_and_answer(served: dict[str, Any]) -> None:
    base, h = served["base"], served["headers"]
    with httpx.Client(base_url=base, headers=h, timeout=10) as c:
        assert c.get("/v1/advertisers", headers={"Authorization": ""}).status_code == 401
        for dim in ("country", "device"):
            assert (
                c.post("/v1/dimensions", json={"name": dim, "type": "category"}).status_code == 201
            )
        features = served["data_dir"] / "features.csv"
        features.write_text(
            "user_id,country,device\n"
            + "".join(f"u{i},{'US' if i % 2 else 'CA'},tv\n" for i in range(300))
        )
        job = c.post("/v1/uploads", json={"path": str(features), "mode": "replace"})
        assert job.status_code == 202, job.text
        for _ in range(300):
            status = c.get(f"/v1/uploads/{job.json()['id']}").json()
            if status["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        assert status["status"] == "succeeded", status
        size = c.post("/v1/audiences/size", json={"rule": 'country = "US"'}).json()
        assert size["count"] == 150

    # Fresh connections land on both workers; each maps the same published snapshot directory.
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        resp = httpx.get(f"{base}/readyz", headers=h, timeout=5)
        assert resp.status_code == 200, resp.text
        seen[resp.json()["worker"]] = resp.json()["checks"]["snapshot"]
    assert len(seen) == 2, f"only worker(s) {sorted(seen)} answered"
    snaps = list(seen.values())
    assert snaps[0] == snaps[1] and snaps[0]["version"] == size["snapshot"]
    assert snaps[0]["users"] == 300 and Path(snaps[0]["path"]).is_dir()

    decided = httpx.post(
        f"{base}/v1/decisions",
        headers=h,
        timeout=5,
        json={"user_id": "u1", "context": {"device": "tv"}},
    )
    assert decided.status_code == 200
    assert decided.json() == {"decisions": [], "snapshot": size["snapshot"], "degraded": False}
    # Metrics aggregate every worker's samples (PROMETHEUS_MULTIPROC_DIR).
    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert "adtarget_decisions_total 1.0" in metrics
