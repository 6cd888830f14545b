"""The real-time benchmark runs end to end at a tiny size; live sizes equal the compacted ones."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _nats_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _nats_up(), reason="NATS not answering on 127.0.0.1:4222")
def test_bench_realtime_small(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_realtime.py"),
            "--users",
            "5000",
            "--http-updates",
            "4000",
            "--stream-updates",
            "2000",
            "--redis-updates",
            "2000",
            "--compact-updates",
            "5000",
            "--batch",
            "1000",
            "--baseline-s",
            "0.5",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "no updates running" in out and "updates running" in out
    assert "http " in out and "nats " in out and "redis " in out and "update -> visible" in out
    assert "compact " in out and "peak RSS" in out
    assert "COUNT MISMATCH" not in proc.stderr
