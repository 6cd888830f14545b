"""The quarantine file keeps line, field, reason and the original row, in CSV or JSON Lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from adtarget.ingest.quarantine import QuarantineWriter, read_quarantine
from adtarget.ingest.validate import Reject

REJECTS = [
    Reject(3, "age", "wrong type: 'x' is not a number", 'u1,"a, b",x'),
    Reject(7, None, "bad JSON", "{oops"),
]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    q = QuarantineWriter(tmp_path / f"q{suffix}")
    q.write(REJECTS)
    q.close()
    q.close()
    rows = read_quarantine(q.path)
    assert [(r["line"], r["field"], r["reason"], r["row"]) for r in rows] == [
        (3, "age", "wrong type: 'x' is not a number", 'u1,"a, b",x'),
        (7, None, "bad JSON", "{oops"),
    ]
    assert q.count == 2 and dict(q.by_field) == {"age": 1, "(row)": 1}


def test_no_file_without_rejects(tmp_path: Path) -> None:
    q = QuarantineWriter(tmp_path / "q.csv")
    q.write([])
    q.close()
    assert not q.written and not q.path.exists()
