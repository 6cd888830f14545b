"""The Ray per-call benchmark runs end to end on a 2-node loopback cluster, and the Ray
settings it compares reach the Ray processes (the actors' niceness is Ray's own setting)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "bench" / "bench_ray_calls.py")
SMALL = ["--nodes", "2", "--rounds", "1", "--calls", "100", "--warm", "20"]


@pytest.mark.slow
def test_bench_ray_calls_configs() -> None:
    proc = subprocess.run(
        [sys.executable, SCRIPT, *SMALL, "--config", "default:"]
        + ["--config", "nice0:RAY_worker_niceness=0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "default load" in proc.stdout and "actors' nice [15]" in proc.stdout
    assert "nice0 load" in proc.stdout and "actors' nice [0]" in proc.stdout
    assert "summary (median over rounds):" in proc.stdout and "CPU per fan-out" in proc.stdout
    assert "SOCKETS OFF LOOPBACK" not in proc.stderr


@pytest.mark.slow
def test_bench_ray_calls_toggle() -> None:
    proc = subprocess.run(
        [sys.executable, SCRIPT, *SMALL, "--toggle", "pin-driver"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " off: p50 " in proc.stdout and "  on: p50 " in proc.stdout


def test_bench_ray_calls_rejects_other_variables() -> None:
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--config", "x:PATH=/tmp"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "not a Ray or gRPC variable" in proc.stderr
