"""Smoke test: the propagation benchmark runs at a tiny size and its patched index checks out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_propagation.py"


def test_bench_propagation_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--line-items", "300", "--changes", "6", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "patched index equals a rebuild" in out and out.rstrip().endswith("yes")
    for label in (
        "baseline: full rebuild per change (warm, p50)",
        "commit -> served p50",
        "commit -> served p99",
        "CPU per change per worker",
        "ratio (rebuild / patch CPU per change)",
    ):
        assert label in out
