"""Vectorized validation: each bad-input case is caught with line, field and reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from adtarget.ingest.readers import ReadBatch, open_reader
from adtarget.ingest.validate import BatchValidator, Reject, ValidationOptions
from adtarget.rules.registry import DimensionSpec

REGISTRY = {
    "country": DimensionSpec("country", "category", frozenset({"US", "CA", "FR"})),
    "age": DimensionSpec("age", "number"),
    "genres": DimensionSpec("genres", "set", frozenset({"drama", "scifi", "kids"})),
    "premium": DimensionSpec("premium", "bool"),
}
HEADER = b"user_id,country,age,genres,premium\n"


def _validate(
    path: Path, batch_rows: int = 3, **opts: Any
) -> tuple[list[dict[str, Any]], list[Reject]]:
    reader = open_reader(path, batch_rows=batch_rows)
    v = BatchValidator(
        REGISTRY, reader.columns, options=ValidationOptions(**opts), raw_delimiter=","
    )
    good: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for rb in reader:
        out = v.validate(rb)
        good += out.good.to_pylist()
        rejects += out.rejects
    return good, rejects


def test_each_bad_case_has_line_field_reason(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(
        HEADER
        + b"\n".join(
            [
                b"u1,US,30,drama|scifi,true",  # 2 ok
                b"u2,XX,30,,false",  # 3 not allowed (category)
                b"u3,CA,abc,,",  # 4 wrong type (number)
                b",US,1,,",  # 5 missing id
                b"u1,FR,2,,",  # 6 duplicate id (first seen in another batch)
                b"u6,\xff\xfe,1,,",  # 7 bad UTF-8
                b"u7,US,1,drama|" + b"x" * 300 + b",",  # 8 over-long
                b"u8,US,1,drama|horror,",  # 9 not allowed (set element)
                b"u9,US,1,,maybe",  # 10 wrong type (bool)
                b"u10,,,,",  # 11 ok: all dimensions missing
            ]
        )
        + b"\n"
    )
    good, rejects = _validate(p)
    assert [g["user_id"] for g in good] == ["u1", "u10"]
    assert good[0] == {
        "user_id": "u1",
        "country": "US",
        "age": 30,
        "genres": ["drama", "scifi"],
        "premium": True,
    }
    got = {r.line: (r.field, r.reason) for r in rejects}
    assert got[3] == ("country", "value 'XX' is not allowed (allowed: CA, FR, US)")
    assert got[4] == ("age", "wrong type: 'abc' is not a number")
    assert got[5] == ("user_id", "missing user id")
    assert got[6][0] == "user_id" and got[6][1].startswith("duplicate user id 'u1'")
    assert got[7] == ("country", "bad UTF-8 encoding")
    assert got[8] == ("genres", "value longer than 256 characters")
    assert got[9][0] == "genres" and "not allowed" in got[9][1]
    assert got[10] == ("premium", "wrong type: 'maybe' is not a bool")
    assert len(rejects) == 8
    assert next(r for r in rejects if r.line == 3).raw == "u2,XX,30,,false"


def test_duplicates_inside_one_batch(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(HEADER + b"a,US,1,,\nb,US,1,,\na,US,2,,\n")
    good, rejects = _validate(p, batch_rows=100)
    assert [g["user_id"] for g in good] == ["a", "b"]
    assert [(r.line, r.field) for r in rejects] == [(4, "user_id")]


def test_max_field_chars_is_configurable(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(HEADER + b"abcdef,US,1,,\n")
    _, rejects = _validate(p, max_field_chars=5)
    assert [(r.field, r.reason) for r in rejects] == [("user_id", "value longer than 5 characters")]


def test_max_field_chars_counts_characters_not_bytes(tmp_path: Path) -> None:
    """Multi-byte cells: 3 characters in 5-6 bytes fit a limit of 3; 4 characters do not."""
    p = tmp_path / "a.csv"
    rows = ["ééé,US,1,,", "éééé,US,1,,", "u1,US,1,é|ü,", "u2,US,1,éééé,"]
    p.write_bytes(HEADER + "\n".join(rows).encode() + b"\n")
    reg = {**REGISTRY, "genres": DimensionSpec("genres", "set")}
    reader = open_reader(p, batch_rows=10)
    v = BatchValidator(reg, reader.columns, options=ValidationOptions(max_field_chars=3))
    out = [v.validate(rb) for rb in reader]
    good = [g["user_id"] for o in out for g in o.good.to_pylist()]
    bad = [(r.line, r.field) for o in out for r in o.rejects]
    assert good == ["ééé", "u1"] and bad == [(3, "user_id"), (5, "genres")]


def test_parquet_typed_columns(tmp_path: Path) -> None:
    batch = pa.record_batch(
        {
            "user_id": pa.array(["a", "b"]),
            "country": pa.array(["US", "CA"]).dictionary_encode(),
            "age": pa.array([1.5, None]),
            "genres": pa.array([["drama"], ["nope"]]),
            "premium": pa.array([True, None]),
        }
    )
    import numpy as np

    v = BatchValidator(REGISTRY, batch.schema.names, options=ValidationOptions())
    out = v.validate(ReadBatch(batch, np.array([0, 1])))
    assert out.good.to_pylist() == [
        {"user_id": "a", "country": "US", "age": 1.5, "genres": ["drama"], "premium": True}
    ]
    assert [(r.line, r.field) for r in out.rejects] == [(1, "genres")]


CELLS = {
    "country": st.sampled_from(["US", "CA", "FR", "XX", ""]),
    "age": st.sampled_from(["1", "-2.5", "1e3", "abc", "", " 7 "]),
    "genres": st.sampled_from(["drama", "drama|kids", "bad", "", "scifi|bad"]),
    "premium": st.sampled_from(["true", "0", "yes", "maybe", ""]),
}


def _reference(row: dict[str, str], seen: set[str]) -> str | None:
    """A plain per-row validator: the field of the first problem, or None."""
    uid = row["user_id"]
    if not uid:
        return "user_id"
    dup = uid in seen
    seen.add(uid)
    for name in ("country", "age", "genres", "premium"):
        v = row[name]
        if not v:
            continue
        if name == "country" and v not in REGISTRY["country"].allowed_values:  # type: ignore[operator]
            return name
        if name == "age":
            try:
                float(v)
            except ValueError:
                return name
        if name == "genres" and any(
            x not in REGISTRY["genres"].allowed_values  # type: ignore[operator]
            for x in v.split("|")
        ):
            return name
        if name == "premium" and v.lower() not in ("true", "0", "yes"):
            return name
    return "user_id" if dup else None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({"user_id": st.sampled_from(["a", "b", "c", "d", "e", ""]), **CELLS}),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 5),
)
def test_vectorized_matches_row_by_row_reference(rows: list[dict[str, str]], batch: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.csv"
        body = "\n".join(
            ",".join(r[k] for k in ("user_id", "country", "age", "genres", "premium")) for r in rows
        )
        p.write_bytes(HEADER + body.encode() + b"\n")
        good, rejects = _validate(p, batch_rows=batch)
    seen: set[str] = set()
    expected = {i + 2: f for i, r in enumerate(rows) if (f := _reference(r, seen)) is not None}
    assert {r.line: r.field for r in rejects} == expected
    assert len(good) + len(rejects) == len(rows)


def test_nan_and_infinite_numbers_are_rejected_not_missing(tmp_path: Path) -> None:
    """A Parquet float column may hold NaN/inf: the row is rejected naming ``age``."""
    import pyarrow.parquet as pq

    p = tmp_path / "n.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["a", "b", "c", "d"],
                "age": pa.array([1.5, float("nan"), None, float("-inf")], pa.float64()),
            }
        ),
        p,
    )
    good, rejects = _validate(p, batch_rows=10)
    assert [g["user_id"] for g in good] == ["a", "c"]
    assert [(r.field, r.line) for r in rejects] == [
        ("age", 1),
        ("age", 3),
    ]  # Parquet rows count from 0
