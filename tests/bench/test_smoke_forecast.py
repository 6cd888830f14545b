"""The forecast benchmark runs end to end at a tiny size and prints every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_forecast.py"


def test_bench_forecast_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--requests", "5000", "--line-items", "200",
         "--baseline-sample", "50", "--overhead-requests", "500"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for label in ("warm-up: the process's first forecast", "forecast, cold",
                  "forecast, cold, replayed in this process",
                  "forecast, warm", "baseline, per-user evaluator", "ratio baseline/forecast",
                  "request log on the decision path, rate 0.01", "rate 1.0",
                  "request log on the decision route", "RequestLog.record alone"):  # fmt: skip
        assert label in proc.stdout, proc.stdout
