"""Smoke run of ``bench/bench_http.py``: tiny catalog, 2-second load, both servers answer 2xx."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_http.py"


@pytest.mark.slow
def test_bench_http_smoke() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--seconds",
            "2",
            "--concurrency",
            "4",
            "--workers",
            "1",
            "--line-items",
            "100",
            "--users",
            "1000",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    ).stdout
    assert "adtarget /v1/decisions" in out and "hello-world ASGI" in out and "ratio:" in out
    figures = json.loads(out.strip().splitlines()[-1])
    for name in ("adtarget", "hello"):
        assert figures[name]["rps"] > 0
        assert figures[name]["non_2xx"] == 0
    assert figures["ratio"] > 0


@pytest.mark.slow
@pytest.mark.redis
def test_bench_http_redis_cluster_smoke() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli not installed")
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *("--seconds", "1", "--concurrency", "4", "--workers", "1"),
            *("--line-items", "50", "--users", "500", "--redis", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "Redis Cluster = " in out
    figures = json.loads(out.strip().splitlines()[-1])["redis"]
    for name in ("single Redis", "Redis Cluster (3+3)"):
        assert figures[name]["rps"] > 0 and figures[name]["non_2xx"] == 0


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_bench_http_fleet_smoke(pg_server_url: str) -> None:
    """Two serve processes on one PostgreSQL catalog under load while changes commit, on a
    single Redis and on a Redis Cluster in the same run."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli not installed")
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *("--seconds", "2", "--concurrency", "4", "--change-every", "0.2"),
            *("--line-items", "50", "--users", "500", "--fleet", "--json", "--statuses"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "fleet: 2 x adtarget serve, single Redis" in out, out
    assert "fleet: 2 x adtarget serve, Redis Cluster (3+3)" in out, out
    assert "fleet: 2 x hello-world" in out, out
    figures = json.loads(out.strip().splitlines()[-1])["fleet"]
    for name in ("single", "cluster", "hello"):
        # statuses (status -> count and one body) say what was answered when this fails
        assert figures[name]["rps"] > 0, out
        assert figures[name]["non_2xx"] == 0, figures[name].get("statuses")
    assert figures["changes"] > 0
    assert figures["single"]["ratio"] > 0 and figures["cluster"]["ratio"] > 0
