"""Streaming readers: line numbers survive skipped rows; formats; memory-bounded batches."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adtarget.errors import InvalidValue
from adtarget.ingest.readers import detect_format, open_reader


def _rows(path: Path, **kw: object) -> tuple[list[int], list[dict[str, object]], list[object]]:
    reader = open_reader(path, batch_rows=2, **kw)  # type: ignore[arg-type]
    lines: list[int] = []
    rows: list[dict[str, object]] = []
    rejects: list[object] = []
    for rb in reader:
        assert rb.batch.num_rows <= 2
        lines += rb.lines.tolist()
        rows += rb.batch.to_pylist()
        rejects += rb.rejects
    return lines, rows, rejects


def test_csv_lines_count_header_and_skip_malformed_rows(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(b"user_id,country\nu1,US\nu2\nu3,CA\nu4,FR,extra\nu5,\n")
    lines, rows, rejects = _rows(p)
    assert lines == [2, 4, 6]
    assert [r["user_id"] for r in rows] == [b"u1", b"u3", b"u5"]
    assert rows[2]["country"] is None  # empty field = missing
    assert [(r.line, r.raw) for r in rejects] == [(3, "u2"), (5, "u4,FR,extra")]  # type: ignore[attr-defined]
    assert "expected 2 fields, found 1" in rejects[0].reason  # type: ignore[attr-defined]


def test_csv_delimiter(tmp_path: Path) -> None:
    p = tmp_path / "a.tsv"
    p.write_bytes(b"user_id\tcountry\nu1\tUS\n")
    _, rows, _ = _rows(p, delimiter="\t")
    assert rows == [{"user_id": b"u1", "country": b"US"}]


def test_parquet_row_index_and_schema(tmp_path: Path) -> None:
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"user_id": ["a", "b", "c"], "age": [1, 2, None]}), p)
    reader = open_reader(p, batch_rows=2)
    assert reader.arrow_schema is not None and reader.arrow_schema.field("age").type == pa.int64()
    lines = [x for rb in reader for x in rb.lines.tolist()]
    assert lines == [0, 1, 2]


def test_jsonl_bad_line_is_a_reject_not_fatal(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(
        b'{"user_id": "u1"}\n\n{"user_id": \n[1]\n{"user_id": "u\xff"}\n{"user_id": "u2"}\n'
    )
    reader = open_reader(p, batch_rows=100)
    lines, rows, rejects = [], [], []
    for rb in reader:
        lines += rb.lines.tolist()
        rows += rb.batch.to_pylist()
        rejects += rb.rejects
    assert [r["user_id"] for r in rows] == ["u1", "u2"]
    assert lines == [1, 6]
    reasons = {r.line: r.reason for r in rejects}
    assert set(reasons) == {3, 4, 5}
    assert reasons[3].startswith("bad JSON")
    assert reasons[4] == "line is not a JSON object"
    assert reasons[5] == "bad UTF-8 encoding"


def test_jsonl_mixed_set_column_becomes_lists(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text('{"user_id": "u1", "g": ["a", "b"]}\n{"user_id": "u2", "g": "c|d"}\n')
    _, rows, _ = _rows(p)
    assert [r["g"] for r in rows] == [["a", "b"], ["c", "d"]]


def test_format_detection() -> None:
    assert detect_format(Path("x.CSV")) == "csv"
    assert detect_format(Path("x.ndjson")) == "jsonl"
    assert detect_format(Path("x.parquet")) == "parquet"
    with pytest.raises(InvalidValue, match="cannot tell the format"):
        detect_format(Path("x.xlsx"))
    with pytest.raises(InvalidValue, match="does not exist"):
        open_reader(Path("/nonexistent.csv"), batch_rows=10)


def test_jsonl_key_first_seen_late_is_rejected_not_dropped(tmp_path: Path) -> None:
    from adtarget.ingest import readers
    from adtarget.ingest.validate import BatchValidator, ValidationOptions
    from adtarget.rules.registry import DimensionSpec

    p = tmp_path / "a.jsonl"
    p.write_text('{"user_id": "u1", "a": "x"}\n{"user_id": "u2", "a": "y", "late": 1}\n')
    reader = readers.JsonlReader(p, batch_rows=1)
    reader.columns = ["user_id", "a"]  # as if "late" were past the peeked lines
    v = BatchValidator(
        {"a": DimensionSpec("a", "category")}, reader.columns, options=ValidationOptions()
    )
    outs = [v.validate(rb) for rb in reader]
    rejects = [r for o in outs for r in o.rejects]
    assert [(r.line, r.field) for r in rejects] == [(2, "late")]
    assert "not a dimension" in rejects[0].reason
    assert sum(o.good.num_rows for o in outs) == 1


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sampled_from(["ok", "short", "long", "blank"]), min_size=1, max_size=30),
    st.integers(1, 7),
)
def test_csv_line_numbers_property(kinds: list[str], batch_rows: int) -> None:
    """Every row that reaches a batch or a reject carries its physical line number."""
    import tempfile

    text = {"ok": "u{i},x,y", "short": "u{i},x", "long": "u{i},x,y,z", "blank": ""}
    body = "\n".join(text[k].format(i=i) for i, k in enumerate(kinds))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.csv"
        p.write_text("user_id,a,b\n" + body + "\n")
        rows: dict[int, str] = {}
        for rb in open_reader(p, batch_rows=batch_rows):
            for line, uid in zip(
                rb.lines.tolist(), rb.batch.column("user_id").to_pylist(), strict=True
            ):
                rows[line] = "blank" if uid is None else "ok"
            for r in rb.rejects:
                rows[r.line] = "bad"
    expected = {i + 2: ("bad" if k in ("short", "long") else k) for i, k in enumerate(kinds)}
    assert rows == expected
