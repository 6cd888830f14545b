"""Smoke run of ``bench/bench_beacons.py``: tiny catalog, short load, every beacon counted once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_beacons.py"


@pytest.mark.slow
def test_bench_beacons_smoke() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "3", "--concurrency", "8", "--workers", "1",
         "--line-items", "50", "--users", "500", "--decisions", "40", "--json"],
        capture_output=True, text=True, timeout=240, check=True,
    ).stdout  # fmt: skip
    assert "adtarget /v1/track" in out and "hello-world ASGI" in out and "ratio:" in out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["beacons"]["rps"] > 0 and figures["beacons"]["non_2xx"] == 0
    # 3 s at any rate above ~100/s fires every URL at least once: each must be counted once
    assert figures["exact"] is True, figures
    assert set(figures["counted"].values()) == {figures["distinct_per_event"]}
