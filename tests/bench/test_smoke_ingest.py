"""Smoke test: the ingest benchmark runs end to end at a tiny size (numbers are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_ingest.py"


def test_bench_ingest_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--users", "20000", "--dir", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert "rows/s" in out.stdout and "peak RSS" in out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["users"] == 20_000
    assert result["read"]["rows"] == result["ingest"]["rows"] == 20_000
    assert result["ingest"]["snapshot"] == "v000001"
    assert set(result["ingest"]["stages"]) >= {"read", "validate", "build", "finish", "publish"}
