"""Smoke test: the catalog lookup benchmark runs at a tiny size and finds the same rows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_catalog.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_catalog_smoke", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_catalog_runs(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load()
    res = bench.run(None, line_items=500, commands=1000, uploads=50, runs=2)
    assert res["backend"] == "sqlite"
    assert res["live_line_items"]["rows"] == 30  # every 10th line item, in every other campaign
    assert res["undo_lookup"]["rows"] == 1 and res["upload_dedup"]["rows"] == 1
    bench.main(["--line-items", "200", "--runs", "1"])
    assert "undo_lookup" in capsys.readouterr().out
