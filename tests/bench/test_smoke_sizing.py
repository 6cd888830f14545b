"""The sizing benchmark runs end to end at a tiny size and its counts agree with DuckDB."""

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
            "20",
            "--duckdb-queries",
            "1",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rows/s" in proc.stdout and "peak RSS" in proc.stdout
    assert "faster than DuckDB" in proc.stdout
    assert "duckdb table" in proc.stdout and "duckdb parquet" in proc.stdout
    assert "memory index on disk" in proc.stdout and "reader process RSS" in proc.stdout
    assert "COUNT MISMATCH" not in proc.stderr
