"""Smoke test: the delivery benchmark runs end to end at a tiny size and its reports agree."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_events.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_events_smoke", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_events_runs_and_reports_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load()
    # main() exits non-zero if our report differs from the plain DuckDB query
    result = bench.main(
        ["--events", "5000", "--batch", "1000", "--repeat", "1", "--dir", str(tmp_path)]
    )
    assert result["events"] == 5000
    assert 0 < result["duplicates"] < 100  # ~1% re-sent events, counted once
    assert result["accepted"] + result["duplicates"] == 5000
    assert result["equal"] is True and result["rows"] > 0
    out = capsys.readouterr().out
    assert "events/s accepted" in out and "plain DuckDB" in out
