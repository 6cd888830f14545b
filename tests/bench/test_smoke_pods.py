"""Smoke run of ``bench/bench_pods.py``: tiny catalog, 1-second loads, both legs answer 2xx and
the sampled breaks are filled (more than one slot on average)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_pods.py"


@pytest.mark.slow
def test_bench_pods_smoke() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *("--seconds", "1", "--concurrency", "4", "--workers", "1"),
            *("--line-items", "100", "--users", "500", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    ).stdout
    assert "single ad" in out and "4-slot pod" in out and "ratio: pods = " in out
    figures = json.loads(out.strip().splitlines()[-1])
    for leg in ("single", "pod"):
        assert figures[leg]["rps"] > 0 and figures[leg]["non_2xx"] == 0
    assert figures["ratio"] > 0
    assert 1 < figures["fill"]["filled"] <= 4 and 0 < figures["fill"]["duration"] <= 120
