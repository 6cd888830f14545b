"""Cutting an upload file into pieces that separate workers read with the ordinary readers.

Why pieces of the same file and the same readers: the distributed build must validate and
quarantine exactly as the single-process path does, so every piece is read by ``CsvReader``,
``JsonlReader`` or Parquet ``iter_batches`` as today, only over a byte range (CSV, JSONL: cut at
line starts) or a run of row groups (Parquet). Each piece knows how to turn its local line
numbers into the file's: a CSV/JSONL piece counts its newlines, the driver adds the counts of the
pieces before it. Files are opened through ``pyarrow.fs``, so a piece is read the same way from
a local path, NFS, S3, GCS or HDFS.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from adtarget.ingest.readers import CsvReader, FileFormat, JsonlReader, ReadBatch, line_chunks
from adtarget.objectstore import resolve

DEFAULT_PIECE_BYTES = 32 << 20
SCAN = 1 << 16


@dataclass(frozen=True, slots=True)
class Piece:
    """One piece of one file: a byte range (CSV, JSONL) or row groups (Parquet)."""

    index: int
    uri: str
    format: FileFormat
    start: int
    end: int
    row_groups: tuple[int, ...] = ()
    first_row: int = 0


def open_fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path of ``uri`` (a plain path is the local filesystem);
    ``objectstore`` resolves it, so S3 takes its endpoint and keys from the AWS environment."""
    loc = resolve(uri)
    if loc.local is not None:
        return pafs.LocalFileSystem(), str(loc.local)
    return loc.fs, loc.path


def plan_pieces(
    uri: str, fmt: FileFormat, *, pieces: int, piece_bytes: int = DEFAULT_PIECE_BYTES
) -> list[Piece]:
    """Cut the file into about ``pieces`` pieces (more for large files: ``piece_bytes`` each)."""
    fs, path = open_fs(uri)
    if fmt == "parquet":
        with fs.open_input_file(path) as fh:
            meta = pq.ParquetFile(fh).metadata
        groups = meta.num_row_groups
        want = max(1, min(groups, max(pieces, -(-meta.serialized_size // piece_bytes))))
        out: list[Piece] = []
        row = 0
        bounds = np.linspace(0, groups, want + 1).astype(int)
        for i in range(want):
            rgs = tuple(range(int(bounds[i]), int(bounds[i + 1])))
            if not rgs:
                continue
            out.append(Piece(len(out), uri, fmt, 0, 0, rgs, row))
            row += sum(meta.row_group(g).num_rows for g in rgs)
        return out or [Piece(0, uri, fmt, 0, 0, (), 0)]
    size = fs.get_file_info(path).size or 0
    with fs.open_input_file(path) as fh:
        first = _line_end(fh, 0, size) if fmt == "csv" else 0  # CSV: the header is not a piece
        count = max(pieces, -(-(size - first) // piece_bytes))
        cuts = [first]
        for k in range(1, count):
            at = _line_end(fh, max(first + (size - first) * k // count, cuts[-1]), size)
            if at > cuts[-1] and at < size:
                cuts.append(at)
        cuts.append(size)
    return [Piece(i, uri, fmt, a, b) for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False))]


def _line_end(fh: Any, pos: int, size: int) -> int:
    """The offset just after the first newline at or after ``pos`` (``size`` if none)."""
    while pos < size:
        chunk = fh.read_at(min(SCAN, size - pos), pos)
        hit = chunk.find(b"\n")
        if hit >= 0:
            return int(pos + hit + 1)
        pos += len(chunk)
    return size


def read_piece(
    piece: Piece,
    *,
    columns: list[str],
    batch_rows: int,
    delimiter: str,
    set_separator: str,
    header: bytes,
) -> tuple[Iterator[ReadBatch], int]:
    """The piece's read batches (local line numbers, see ``line_offset``) and its newlines."""
    fs, path = open_fs(piece.uri)
    if piece.format == "parquet":
        return _parquet(fs, path, piece, batch_rows), 0
    with fs.open_input_file(path) as fh:
        data = fh.read_at(piece.end - piece.start, piece.start)
    newlines = data.count(b"\n")
    if piece.format == "csv":
        return _RangeCsv(header + data, columns, batch_rows, delimiter).batches(), newlines
    return _RangeJsonl(data, columns, batch_rows, set_separator).batches(), newlines


def line_offset(fmt: FileFormat, newlines_before: int) -> int:
    """What to add to a piece's local line numbers to get the file's (``newlines_before``: the
    newlines in the file before the piece starts; Parquet rows are numbered by the piece)."""
    if fmt == "csv":
        return newlines_before - 1  # local line 1 is the header copy, line 2 the first row
    if fmt == "jsonl":
        return newlines_before
    return 0


def read_header(uri: str) -> bytes:
    """A CSV file's header line, newline included."""
    fs, path = open_fs(uri)
    size = fs.get_file_info(path).size or 0
    with fs.open_input_file(path) as fh:
        end = _line_end(fh, 0, size)
        return bytes(fh.read_at(end, 0))


def _parquet(fs: pafs.FileSystem, path: str, piece: Piece, batch_rows: int) -> Iterator[ReadBatch]:
    with fs.open_input_file(path) as fh:
        pf = pq.ParquetFile(fh)
        done = piece.first_row
        if not piece.row_groups:
            return
        for batch in pf.iter_batches(
            batch_size=batch_rows, row_groups=list(piece.row_groups), use_threads=False
        ):
            lines = np.arange(done, done + batch.num_rows, dtype=np.int64)
            done += batch.num_rows
            yield ReadBatch(batch, lines)


class _RangeCsv(CsvReader):
    """``CsvReader`` over a header line plus one piece's bytes, held in memory."""

    def __init__(self, data: bytes, columns: list[str], batch_rows: int, delimiter: str) -> None:
        self.path = io.BytesIO(data)  # type: ignore[assignment]  # pyarrow reads file objects
        self.batch_rows = batch_rows
        self.delimiter = delimiter
        self.columns = columns
        self.arrow_schema = None

    def batches(self) -> Iterator[ReadBatch]:
        """The read batches, as ``CsvReader`` yields them for a whole file."""
        return iter(self)


class _RangeJsonl(JsonlReader):
    """``JsonlReader`` over one piece's bytes; columns are the whole file's."""

    def __init__(self, data: bytes, columns: list[str], batch_rows: int, separator: str) -> None:
        self._data = data
        self.batch_rows = batch_rows
        self.set_separator = separator
        self.arrow_schema = None
        self.columns = columns

    def _chunks(self) -> Iterator[tuple[int, list[bytes]]]:
        return line_chunks(io.BytesIO(self._data), self.batch_rows)

    def batches(self) -> Iterator[ReadBatch]:
        """The read batches, as ``JsonlReader`` yields them for a whole file."""
        return iter(self)
