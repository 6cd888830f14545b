"""The sizing bench runs end to end at a tiny size: every rule, both peers, HTTP, counts equal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_sizing_small(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_sizing.py"),
            "--users",
            "20000",
            "--queries",
            "5",
            "--peer-queries",
            "1",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "rows/s" in out and "peak RSS" in out and "pyarrow read" in out
    assert "layouts {'age': 'range', 'watch_hours': 'buckets'}" in out
    assert out.count("\nR") >= 20  # ten or more rules: a result row and a legend row each
    assert "chdb   bitmap states built" in out
    assert "fixed cost over hello-world" in out
    assert "typing one clause changed per call, cache on" in out
    assert "overlap 20 audiences" in out
    verdicts = out[out.index("targets (load average") :].splitlines()[1:]
    assert len(verdicts) == 7  # p50, p99 tail, HTTP p50, HTTP tail, fixed cost, x chDB, overlap
    assert all(" met " in v or " NOT MET " in v for v in verdicts), out
    assert "COUNT MISMATCH" not in proc.stderr
