"""The sizing bench's verdict: each of issue 16's targets judged met or not from the figures."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "sizing_targets.py"


@pytest.fixture(scope="module")
def targets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sizing_targets", PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _state(lines: list[str], what: str) -> str:
    (line,) = [x for x in lines if what in x]
    return "NOT MET" if " NOT MET " in line else "skipped" if " skipped " in line else "met"


def test_all_met(targets: ModuleType) -> None:
    rows = [
        targets.RuleRow("R1", 0.34, 0.9, 1.5, 2.3, 52.6),
        targets.RuleRow("R2", 0.004, 0.008, 0.5, 0.8, 4.7),
    ]
    lines = targets.verdict(rows, -0.05, 16.4)
    assert lines[0].startswith("targets (load average ")
    assert [
        _state(lines, w)
        for w in (
            "in process p50 <=",
            "in process p99 <=",
            "HTTP p50 <=",
            "HTTP p99 <=",
            "fixed cost",
            "ClickHouse",
            "overlap",
        )
    ] == ["met"] * 7
    assert "worst R1 0.340 ms" in lines[1]


def test_each_miss_is_named(targets: ModuleType) -> None:
    rows = [
        targets.RuleRow("R1", 0.5, 1.2, 1.9, 5.0, 30.0),  # HTTP tail 2.6x; 60x chDB
        targets.RuleRow("R10", 1.2, 3.0, 2.4, 3.0, 70.0),  # p50 and HTTP p50 missed; 58x
        targets.RuleRow("R4", 0.1, 0.5, 0.9, 1.0, 4.0, 0.1, 0.16),  # tail 5x (CPU 1.6x); 40x
    ]
    lines = targets.verdict(rows, 0.31, 63.0)
    assert _state(lines, "in process p50 <=") == "NOT MET" and "worst R10 1.200" in lines[1]
    assert (
        _state(lines, "in process p99 <=") == "NOT MET"
        and "worst R4 5.0x (CPU time: worst R4 1.6x)" in lines[2]
    )
    assert _state(lines, "HTTP p50 <=") == "NOT MET"
    assert _state(lines, "HTTP p99 <=") == "met"
    assert _state(lines, "fixed cost") == "NOT MET"
    assert _state(lines, "ClickHouse") == "NOT MET" and "least R4 40x" in "".join(lines)
    assert _state(lines, "overlap") == "NOT MET"


def test_skipped_columns(targets: ModuleType) -> None:
    nan = math.nan
    lines = targets.verdict([targets.RuleRow("R1", 0.3, 0.6, nan, nan, nan)], None, 10.0)
    assert _state(lines, "HTTP p50 <=") == "skipped"
    assert _state(lines, "ClickHouse") == "skipped"
    assert not any("fixed cost" in x for x in lines)
