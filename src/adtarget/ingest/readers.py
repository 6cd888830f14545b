"""Streaming readers: CSV, Parquet and JSON Lines as pyarrow record batches with line numbers.

Why: upload files hold tens of millions of rows; memory must be bounded by the batch size, not
the file. Every row keeps the line (CSV/JSONL: physical line in the file, header = line 1) or
the row index (Parquet, 0-based) it came from, so a bad row can be quarantined with a pointer a
person can open in an editor. Rows the parser itself cannot split into columns (wrong field
count, malformed JSON) never reach a batch: they arrive as ``ParseReject`` beside it.
CSV and JSONL cells are read as raw bytes/strings and typed later by ``ingest.validate``, so
one bad cell rejects one row, not the whole file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from adtarget.errors import InvalidValue
from adtarget.objectstore import Location, resolve

FileFormat = Literal["csv", "parquet", "jsonl"]
SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


@dataclass(frozen=True, slots=True)
class ParseReject:
    """A row the parser could not turn into columns."""

    line: int
    raw: str
    reason: str
    field: str | None = None


@dataclass(slots=True)
class ReadBatch:
    """One batch of rows as read, the original line number of each row, and parse rejects."""

    batch: pa.RecordBatch
    lines: np.ndarray[Any, np.dtype[np.int64]]
    rejects: list[ParseReject] = field(default_factory=list)


def detect_format(path: Path | Location, fmt: str | None = None) -> FileFormat:
    """The file format from ``fmt`` or the file suffix (``.gz`` ignored)."""
    if fmt:
        if fmt not in ("csv", "parquet", "jsonl"):
            raise InvalidValue(f"unknown file format {fmt!r} (csv, parquet, jsonl)", field="format")
        return fmt  # type: ignore[return-value]
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in SUFFIXES:
        return SUFFIXES[suffixes[-1]]
    raise InvalidValue(
        f"cannot tell the format of {path.name!r}: use .csv, .parquet or .jsonl", field="path"
    )


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


class CsvReader:
    """CSV with a header row; every cell read as bytes, an empty cell read as missing."""

    format: FileFormat = "csv"

    def __init__(self, path: Path | Location, *, batch_rows: int, delimiter: str = ",") -> None:
        self.path = path = resolve(path)
        self.batch_rows = batch_rows
        self.delimiter = delimiter
        with path.open_input() as fh:
            header = fh.readline()
        if not header.strip():
            raise InvalidValue(f"{path.name}: the first line must be a header row", field="path")
        text = header.decode("utf-8", errors="replace").rstrip("\r\n")
        self.columns: list[str] = next(csv.reader([text], delimiter=delimiter))
        if len(set(self.columns)) != len(self.columns):
            raise InvalidValue(f"{path.name}: duplicate column names in the header", field="path")
        self.arrow_schema: pa.Schema | None = None

    def _source(self) -> Any:
        """What ``pyarrow.csv.open_csv`` reads: a local path, a remote stream, or (pieces) bytes."""
        src: Any = self.path
        if isinstance(src, Location):
            return src.arrow_input()
        return src

    def __iter__(self) -> Iterator[ReadBatch]:
        skipped: list[int] = []  # physical lines of rows the parser skipped, ascending
        rejects: list[ParseReject] = []
        ncols = len(self.columns)

        def on_invalid(row: Any) -> str:
            text = row.text or ""
            if row.number is not None:
                skipped.append(int(row.number))
                if text.strip() or ncols == 1:
                    rejects.append(
                        ParseReject(
                            int(row.number),
                            text,
                            f"expected {row.expected_columns} fields, found {row.actual_columns}",
                        )
                    )
            return "skip"

        # Roughly batch_rows rows per block: pyarrow streams block by block.
        block = max(1 << 16, min(1 << 26, self.batch_rows * 64))
        reader = pacsv.open_csv(
            self._source(),
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=block, skip_rows=1, column_names=self.columns
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=self.delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.binary() for c in self.columns},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
        done = 0
        for batch in reader:
            for start in range(0, batch.num_rows, self.batch_rows):
                part = batch.slice(start, self.batch_rows)
                k = np.arange(done, done + part.num_rows, dtype=np.int64)
                done += part.num_rows
                adj = np.asarray(skipped, dtype=np.int64) - np.arange(len(skipped)) - 2
                lines = k + 2 + np.searchsorted(adj, k, side="right")
                out, rejects = rejects, []
                yield ReadBatch(part, lines.astype(np.int64), out)
        if rejects:
            empty = pa.RecordBatch.from_pydict({c: pa.array([], pa.binary()) for c in self.columns})
            yield ReadBatch(empty, np.zeros(0, np.int64), rejects)


class ParquetReader:
    """Parquet via ``iter_batches``; the typed schema drives dimension inference."""

    format: FileFormat = "parquet"

    def __init__(self, path: Path | Location, *, batch_rows: int) -> None:
        self.path = path = resolve(path)
        self.batch_rows = batch_rows
        self._file = pq.ParquetFile(path.parquet_source())
        self.arrow_schema: pa.Schema | None = self._file.schema_arrow
        self.columns: list[str] = list(self.arrow_schema.names)

    def __iter__(self) -> Iterator[ReadBatch]:
        done = 0
        for batch in self._file.iter_batches(batch_size=self.batch_rows, use_threads=True):
            lines = np.arange(done, done + batch.num_rows, dtype=np.int64)
            done += batch.num_rows
            yield ReadBatch(batch, lines)


def line_chunks(fh: BinaryIO, batch_rows: int) -> Iterator[tuple[int, list[bytes]]]:
    """``(first line number, lines)`` of about ``batch_rows`` lines at a time (JSONL reading)."""
    line_no = 1
    while True:
        lines = fh.readlines(max(1 << 16, batch_rows * 48))
        if not lines:
            return
        yield line_no, lines
        line_no += len(lines)


class JsonlReader:
    """JSON Lines in chunks: pyarrow parses a clean chunk; a chunk with a bad line is parsed line
    by line so only that line is quarantined (bad JSON, bad UTF-8, not an object)."""

    format: FileFormat = "jsonl"

    def __init__(self, path: Path | Location, *, batch_rows: int, set_separator: str = "|") -> None:
        self.path = path = resolve(path)
        self.batch_rows = batch_rows
        self.set_separator = set_separator
        self.arrow_schema: pa.Schema | None = None
        self.columns: list[str] = self._peek_columns()

    def _peek_columns(self) -> list[str]:
        """Column names from the first lines (more may appear later; they are added then)."""
        seen: dict[str, None] = {}
        with self.path.open_input() as fh:
            for _, raw in zip(range(1000), fh, strict=False):
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    seen.update(dict.fromkeys(obj))
        return list(seen)

    def _chunks(self) -> Iterator[tuple[int, list[bytes]]]:
        with self.path.open_input() as fh:
            yield from line_chunks(fh, self.batch_rows)

    def __iter__(self) -> Iterator[ReadBatch]:
        for first, lines in self._chunks():
            numbers = np.arange(first, first + len(lines), dtype=np.int64)
            keep = np.fromiter((bool(x.strip()) for x in lines), dtype=bool, count=len(lines))
            body = [
                x if x.endswith(b"\n") else x + b"\n" for x, k in zip(lines, keep, strict=True) if k
            ]
            kept_lines = numbers[keep]
            if not body:
                continue
            try:
                table = pajson.read_json(
                    io.BytesIO(b"".join(body)),
                    read_options=pajson.ReadOptions(
                        use_threads=True, block_size=sum(map(len, body)) + 1
                    ),
                )
                if table.num_rows != len(body):
                    raise pa.ArrowInvalid("row count mismatch")
                batch = table.combine_chunks().to_batches()[0] if table.num_rows else None
                if batch is not None:
                    yield ReadBatch(batch, kept_lines)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                yield self._slow_chunk(body, kept_lines)

    def _slow_chunk(self, body: list[bytes], lines: np.ndarray[Any, Any]) -> ReadBatch:
        """Parse line by line (only for a chunk pyarrow refused) and quarantine the bad lines."""
        rows: list[dict[str, Any]] = []
        good: list[int] = []
        rejects: list[ParseReject] = []
        for raw, line in zip(body, lines.tolist(), strict=True):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                rejects.append(
                    ParseReject(line, _decode(raw.rstrip(b"\r\n")), "bad UTF-8 encoding")
                )
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                rejects.append(ParseReject(line, _decode(raw.rstrip(b"\r\n")), f"bad JSON: {exc}"))
                continue
            if not isinstance(obj, dict):
                rejects.append(
                    ParseReject(line, _decode(raw.rstrip(b"\r\n")), "line is not a JSON object")
                )
                continue
            rows.append(obj)
            good.append(line)
        names: dict[str, None] = dict.fromkeys(self.columns)
        for obj in rows:
            names.update(dict.fromkeys(obj))
        arrays = [_column([obj.get(name) for obj in rows], self.set_separator) for name in names]
        batch = pa.RecordBatch.from_arrays(arrays, names=list(names))
        return ReadBatch(batch, np.asarray(good, dtype=np.int64), rejects)


def _column(values: list[Any], separator: str) -> pa.Array:
    """An arrow array of ``values``; mixed types fall back to strings (typed later, per row),
    or to lists of strings when the column mixes lists and ``separator``-joined strings."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        pass
    present = [v for v in values if v is not None]
    mixed = any(isinstance(v, list) for v in present)
    if mixed and all(isinstance(v, str | list) for v in present):
        try:
            return pa.array(
                [v.split(separator) if isinstance(v, str) else v for v in values],
                pa.list_(pa.string()),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            pass
    return pa.array(
        [v if v is None or isinstance(v, str) else orjson.dumps(v).decode() for v in values],
        pa.string(),
    )


Reader = CsvReader | ParquetReader | JsonlReader


def open_reader(
    path: Path | str | Location,
    *,
    batch_rows: int,
    fmt: str | None = None,
    delimiter: str = ",",
    set_separator: str = "|",
) -> Reader:
    """A streaming reader for ``path``.

    Args:
        path: the upload file: a local path or a URI (``s3://bucket/key``, see ``objectstore``).
        batch_rows: rows per yielded batch (bounds memory).
        fmt: ``csv``/``parquet``/``jsonl``; by default taken from the suffix.
        delimiter: CSV field delimiter.
        set_separator: JSONL lines mixing lists and joined strings in a set column split on it.
    """
    loc = resolve(path)
    if not loc.is_file():
        raise InvalidValue(f"upload file {loc.uri!r} does not exist", field="path")
    kind = detect_format(loc, fmt)
    if kind == "csv":
        if len(delimiter) != 1:
            raise InvalidValue("the CSV delimiter must be one character", field="delimiter")
        return CsvReader(loc, batch_rows=batch_rows, delimiter=delimiter)
    if kind == "parquet":
        return ParquetReader(loc, batch_rows=batch_rows)
    return JsonlReader(loc, batch_rows=batch_rows, set_separator=set_separator)
