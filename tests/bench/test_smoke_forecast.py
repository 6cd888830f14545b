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


def test_bench_forecast_smoke_with_the_snapshot_profile_store() -> None:
    """The forecasts read the same profiles from a published snapshot, and answer the same."""
    args = ["--requests", "3000", "--line-items", "100", "--baseline-sample", "10", "--no-overhead"]
    answers = []
    for store in ("memory", "snapshot"):
        proc = subprocess.run(
            [sys.executable, str(BENCH), *args, "--profiles", store],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        cold = next(
            line for line in proc.stdout.splitlines() if line.startswith("forecast, cold (")
        )
        answers.append(cold[cold.index("replayed") : cold.index("[target")])
    assert "published as a snapshot" in proc.stdout
    assert answers[0] == answers[1]
