"""Smoke test: the freshness benchmark runs at a tiny size and its cached index checks out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_freshness.py"


def test_bench_freshness_smoke() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--line-items",
            "300",
            "--changes",
            "2",
            "--runs",
            "1",
            "--poll",
            "0.1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "cached index matches the scratch index          yes" in out
    for label in (
        "baseline: rebuild from scratch",
        "rebuild after 1 changed line item",
        "ratio (scratch / after one change)",
        "commit -> served",
        "longest stall of the match loop",
    ):
        assert label in out
