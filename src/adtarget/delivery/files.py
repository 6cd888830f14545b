"""Event files (NDJSON, JSON array, CSV, Parquet) read as batches of columns or objects.

Why batches: an import of millions of events must not hold the file in memory, and every
batch goes through the same intake as the HTTP route, with row numbers that run across batches.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from adtarget.delivery.models import ID_FIELDS
from adtarget.errors import InvalidValue

BATCH_ROWS = 50_000
_STRING_COLUMNS = (*ID_FIELDS, "type", "ts", "country", "device", "dims")


def file_format(path: Path) -> str:
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


def count_rows(path: Path) -> int | None:
    """Rows in the file when cheap to know (Parquet metadata), else ``None``."""
    if file_format(path) == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def _columns(table: pa.Table | pa.RecordBatch) -> dict[str, list[Any]]:
    return {name: table.column(name).to_pylist() for name in table.schema.names}


def read_batches(
    path: Path, batch_rows: int = BATCH_ROWS
) -> Iterator[list[Any] | dict[str, list[Any]]]:
    """Yield batches: lists of objects (JSON kinds; ``None`` for a bad line) or columns."""
    fmt = file_format(path)
    if fmt == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            yield _columns(batch)
    elif fmt == "csv":
        with path.open(encoding="utf-8", newline="") as fh:  # csv: quoted names with commas
            header = [name.strip() for name in next(csv.reader(fh), [])]
        opts = pcsv.ConvertOptions(
            column_types={c: pa.string() for c in _STRING_COLUMNS if c in header},
            strings_can_be_null=True,
        )
        reader = pcsv.open_csv(
            path, convert_options=opts, read_options=pcsv.ReadOptions(block_size=8 << 20)
        )
        for batch in reader:
            yield _columns(batch)
    elif fmt == "json":
        with path.open("rb") as fh:
            data = json.load(fh)
        if not isinstance(data, list):
            raise InvalidValue(f"{path.name}: expected a JSON array of events", field="file")
        for i in range(0, len(data), batch_rows):
            yield data[i : i + batch_rows]
    else:
        chunk: list[Any] = []
        with path.open("rb") as fh:
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
