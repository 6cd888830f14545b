"""Event files (NDJSON, JSON array, CSV, Parquet) read as batches of columns or objects.

Why batches: an import of millions of events must not hold the file in memory, and every
batch goes through the same intake as the HTTP route, with row numbers that run across batches.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from adtarget.delivery.models import ID_FIELDS
from adtarget.errors import InvalidValue
from adtarget.objectstore import Location, resolve

BATCH_ROWS = 50_000
_DELIMITERS = (";", "\t", "|", ",")
_STRING_COLUMNS = (*ID_FIELDS, "type", "ts", "country", "device", "dims")


def file_format(path: Path | Location) -> str:
    """``ndjson`` | ``json`` | ``csv`` | ``parquet`` from the file name."""
    name = path.name.lower()
    for suffix, fmt in (
        (".ndjson", "ndjson"),
        (".jsonl", "ndjson"),
        (".json", "json"),
        (".csv", "csv"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
    ):
        if name.endswith(suffix):
            return fmt
    raise InvalidValue(
        f"{path.name}: unknown event file type (use .ndjson, .jsonl, .json, .csv or .parquet)",
        field="file",
    )


def open_events(path: Path | str | Location) -> Location:
    """The event file's location (local path or ``s3://...``); ``InvalidValue`` if it is absent."""
    loc = resolve(path)
    if not loc.is_file():
        raise InvalidValue(f"event file {loc.uri!r} does not exist", field="file")
    return loc


def delimiter_hint(columns: list[str], delimiter: str) -> str | None:
    """``use --delimiter ';'`` when a CSV header read with ``delimiter`` came out as one column
    holding another delimiter (the file is ``;``- or tab-separated); else ``None``."""
    if len(columns) == 1:
        for other in _DELIMITERS:
            if other != delimiter and other in columns[0]:
                shown = "'\\t'" if other == "\t" else repr(other)
                return f"the header looks {shown}-separated: use --delimiter {shown}"
    return None


def count_rows(path: Path | str | Location) -> int | None:
    """Rows in the file when cheap to know (Parquet metadata), else ``None``."""
    loc = resolve(path)
    if file_format(loc) == "parquet":
        return int(pq.ParquetFile(loc.parquet_source()).metadata.num_rows)
    return None


def _columns(table: pa.Table | pa.RecordBatch) -> dict[str, list[Any]]:
    return {name: table.column(name).to_pylist() for name in table.schema.names}


def read_batches(
    path: Path | str | Location, batch_rows: int = BATCH_ROWS, delimiter: str = ","
) -> Iterator[list[Any] | dict[str, list[Any]]]:
    """Yield batches: lists of objects (JSON kinds; ``None`` for a bad line) or columns.

    A CSV whose header has no ``event_id`` and reads as one column holding another delimiter
    is refused with the ``--delimiter`` that reads it, not a "required" error on every row.
    """
    if len(delimiter) != 1:
        raise InvalidValue("the CSV delimiter must be one character", field="delimiter")
    loc = resolve(path)
    fmt = file_format(loc)
    if fmt == "parquet":
        for batch in pq.ParquetFile(loc.parquet_source()).iter_batches(batch_size=batch_rows):
            yield _columns(batch)
    elif fmt == "csv":
        with loc.open_input() as raw:  # csv: quoted names with commas
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            header = [name.strip() for name in next(csv.reader(text, delimiter=delimiter), [])]
        hint = delimiter_hint(header, delimiter) if "event_id" not in header else None
        if hint is not None:
            raise InvalidValue(f"{loc.name}: no event_id column; {hint}", field="delimiter")
        opts = pcsv.ConvertOptions(
            column_types={c: pa.string() for c in _STRING_COLUMNS if c in header},
            strings_can_be_null=True,
        )
        reader = pcsv.open_csv(
            loc.arrow_input(),
            convert_options=opts,
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            read_options=pcsv.ReadOptions(block_size=8 << 20),
        )
        for batch in reader:
            yield _columns(batch)
    elif fmt == "json":
        with loc.open_input() as fh:
            data = json.load(fh)
        if not isinstance(data, list):
            raise InvalidValue(f"{loc.name}: expected a JSON array of events", field="file")
        for i in range(0, len(data), batch_rows):
            yield data[i : i + batch_rows]
    else:
        chunk: list[Any] = []
        with loc.open_input() as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    chunk.append(json.loads(line))
                except ValueError:
                    chunk.append(None)
                if len(chunk) >= batch_rows:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk
