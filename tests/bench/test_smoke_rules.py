"""Smoke test: the rules benchmark runs end to end at a tiny size and its evaluators agree."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_rules.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_rules_smoke", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_rules_runs_and_counts_agree(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load()
    result = bench.run(5_000, bitmap_runs=3, sql_runs=2)  # asserts python = bitmap = duckdb
    assert result["users"] == 5_000
    assert 0 < result["matches"] < 5_000
    for key in ("ns_per_user_compiled", "bitmap_p50_ms", "bitmap_p99_ms", "duckdb_p50_ms"):
        assert result[key] > 0
    bench.main(["--users", "2000", "--bitmap-runs", "2", "--sql-runs", "1"])
    out = capsys.readouterr().out
    assert "ns/user" in out and "p50" in out and "python = bitmap = duckdb" in out
