"""The decision benchmark runs end to end at a tiny size and its answers check out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_decision.py"


def test_bench_decision_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--line-items", "500", "--requests", "100"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "all answers checked equal" in out
    for label in (
        "index match",
        "scan (compile_rule)",
        "ratio (scan/decide, p50)",
        "engine.decide",
        "decide with explain",
    ):
        assert label in out
