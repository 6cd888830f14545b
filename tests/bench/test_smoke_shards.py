"""The shards benchmark runs end to end at a tiny size on a 2-node loopback cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_shards_small(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_shards.py"),
            "--users",
            "20000",
            "--shards",
            "2",
            "--nodes",
            "2",
            "--queries",
            "10",
            "--duckdb-queries",
            "1",
            "--object-store-mb",
            "80",
            "--workdir",
            str(tmp_path),
            "--http",
            "--updates",
            "300",
            "--hosts-sweep",
        ],
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for words in ("build  single process", "build  ray 2 shards", "size   ray 2 shards /"):
        assert words in proc.stdout
    assert "fan-out alone" in proc.stdout and "overlap 10 rules" in proc.stdout
    assert "edited rules" in proc.stdout
    assert "shard hosts following the log" in proc.stdout and "hosts  2 host(s)" in proc.stdout
    assert "1 shard set(s) on the cluster" in proc.stdout  # serve --workers 2 shares one set
    assert "http   serve (ADTARGET_AUDIENCE_BACKEND=ray): count" in proc.stdout
    assert "shards 2" in proc.stdout and "export:" in proc.stdout
    assert " 0 off loopback" in proc.stdout and "SOCKETS OFF LOOPBACK" not in proc.stderr
    assert "COUNT MISMATCH" not in proc.stderr
