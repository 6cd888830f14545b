"""What runs on the Ray workers of ``ingest --engine ray`` (see ``ingest.ray_build``).

Why a module of its own: these functions are shipped to the workers (by reference, so every
node imports them from the installed package); the driver side stays apart. Each takes the
small, picklable ``BuildContext`` and writes into the staged version on shared storage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from adtarget.audience.build import Mode, SnapshotBuilder
from adtarget.audience.shard_build import FixedDir, split_by_shard
from adtarget.audience.sharding import shard_name
from adtarget.audience.snapshot import Snapshot
from adtarget.errors import AdtargetError
from adtarget.ingest.pieces import Piece, read_piece
from adtarget.ingest.readers import ReadBatch
from adtarget.ingest.validate import DUPLICATE_ID, BatchValidator, Reject, ValidationOptions
from adtarget.rules.registry import DimensionSpec

PARTS = "_parts"
CRASH_ENV = "ADTARGET_RAY_TEST_CRASH_SHARD"
"""Test hook: ``K:MARKER`` makes the first attempt of shard K's task kill its own worker
process (SIGKILL) unless MARKER exists; ``K:`` kills every attempt (a build that cannot
finish)."""
REJECT_SCHEMA = pa.schema(
    [("line", pa.int64()), ("field", pa.string()), ("reason", pa.string()), ("raw", pa.string())]
)


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """Everything a worker needs, sent with every task (small, picklable)."""

    staged: str
    shards: int
    mode: Mode
    registry: dict[str, DimensionSpec]
    columns: list[str]
    options: ValidationOptions
    raw_delimiter: str | None
    batch_rows: int
    delimiter: str
    set_separator: str
    header: bytes
    pieces: list[Piece]
    bases: list[str | None]
    rule_segments: list[tuple[str, str]]
    now: float
    crash: str | None = None


def _validator(ctx: BuildContext) -> BatchValidator:
    opts = dataclasses.replace(ctx.options, check_duplicates=False)
    return BatchValidator(ctx.registry, ctx.columns, options=opts, raw_delimiter=ctx.raw_delimiter)


def _id_text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _read(ctx: BuildContext, piece: Piece) -> tuple[Iterator[ReadBatch], int]:
    """``read_piece`` with the build's reading options."""
    return read_piece(
        piece,
        columns=ctx.columns,
        batch_rows=ctx.batch_rows,
        delimiter=ctx.delimiter,
        set_separator=ctx.set_separator,
        header=ctx.header,
    )


def read_piece_task(ctx: BuildContext, item: dict[str, Any]) -> dict[str, Any]:
    """Ray Data map: read + validate one piece, write its rows per shard and its rejects."""
    t0 = time.perf_counter()
    piece = ctx.pieces[int(item["piece"])]
    batches, newlines = _read(ctx, piece)
    validator = _validator(ctx)
    idc = ctx.options.id_column
    tables: list[pa.Table] = []
    rejects: list[Reject] = []
    for rb in batches:
        vb = validator.validate(rb)
        rejects.extend(vb.rejects)
        bad_lines = np.asarray([r.line for r in vb.rejects], dtype=np.int64)
        good_mask = ~np.isin(rb.lines, bad_lines)
        good = pa.Table.from_batches([vb.good])
        tables.append(_tag(good, piece.index, rb.lines[good_mask], True))
        # rows rejected for a dimension still "use" their id: a later row with it is a duplicate
        at = {int(x): i for i, x in enumerate(rb.lines.tolist())}
        seen = [
            (r.line, at[r.line])
            for r in vb.rejects
            if r.field != idc and r.line in at and idc in rb.batch.schema.names
        ]
        if seen:
            ids = rb.batch.column(idc).take(pa.array([i for _, i in seen])).to_pylist()
            ok = [(line, _id_text(v)) for (line, _), v in zip(seen, ids, strict=True) if v]
            if ok:
                only = pa.table({"user_id": pa.array([v for _, v in ok], pa.string())})
                lines = np.asarray([line for line, _ in ok], dtype=np.int64)
                tables.append(_tag(only, piece.index, lines, False))
    _write_parts(ctx, piece.index, tables, validator)
    _write_rejects(ctx, piece.index, rejects)
    return {
        "piece": piece.index,
        "newlines": newlines,
        "rejected": len(rejects),
        "seconds": time.perf_counter() - t0,
    }


def _tag(table: pa.Table, piece: int, lines: Any, good: bool) -> pa.Table:
    n = table.num_rows
    return (
        table.append_column("__piece", pa.array(np.full(n, piece, dtype=np.int32)))
        .append_column("__line", pa.array(np.asarray(lines, dtype=np.int64)))
        .append_column("__good", pa.array(np.full(n, good)))
    )


def _write_parts(
    ctx: BuildContext, piece: int, tables: list[pa.Table], validator: BatchValidator
) -> None:
    schema = validator.schema
    for extra in (("__piece", pa.int32()), ("__line", pa.int64()), ("__good", pa.bool_())):
        schema = schema.append(pa.field(*extra))
    parts = [_conform(t, schema) for t in tables if t.num_rows]
    table = pa.concat_tables(parts or [schema.empty_table()])
    batch = table.combine_chunks().to_batches()
    whole = batch[0] if batch else pa.RecordBatch.from_pylist([], schema)
    for k, part in split_by_shard(whole, ctx.shards):
        out = Path(ctx.staged) / PARTS / shard_name(k)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f"piece-{piece:06d}.arrow.tmp"
        with ipc.new_file(tmp, schema) as writer:
            writer.write_batch(part)
        os.replace(tmp, out / f"piece-{piece:06d}.arrow")


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns, in order; absent ones all null."""
    n = table.num_rows
    cols = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(n, f.type)
        for f in schema
    ]
    return pa.table(cols, schema=schema)


def _write_rejects(ctx: BuildContext, piece: int, rejects: list[Reject]) -> None:
    out = Path(ctx.staged) / PARTS / "rejects"
    out.mkdir(parents=True, exist_ok=True)
    cols = {
        "line": [r.line for r in rejects],
        "field": [r.field for r in rejects],
        "reason": [r.reason for r in rejects],
        "raw": [r.raw for r in rejects],
    }
    table = pa.table(cols, schema=REJECT_SCHEMA)
    tmp = out / f"piece-{piece:06d}.arrow.tmp"
    with ipc.new_file(tmp, REJECT_SCHEMA) as writer:
        writer.write_table(table)
    os.replace(tmp, out / f"piece-{piece:06d}.arrow")


def _maybe_crash(ctx: BuildContext, k: int) -> None:
    if not ctx.crash:
        return
    which, _, marker = ctx.crash.partition(":")
    if int(which) != k:
        return
    if marker and Path(marker).exists():
        return
    if marker:
        Path(marker).touch()
    os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-task, as on a lost node


def build_shard_task(ctx: BuildContext, k: int) -> dict[str, Any]:
    """Ray task: drop duplicate ids in file order and build shard ``k`` as a normal snapshot."""
    _maybe_crash(ctx, k)
    t0 = time.perf_counter()
    src = Path(ctx.staged) / PARTS / shard_name(k)
    files = sorted(src.glob("piece-*.arrow")) if src.is_dir() else []
    # memory-mapped: the parts are read from the page cache, not copied onto the heap
    tables = [ipc.open_file(pa.memory_map(str(f))).read_all() for f in files]
    dest = Path(ctx.staged) / shard_name(k)
    shutil.rmtree(dest, ignore_errors=True)  # a retried attempt starts clean
    base_path = ctx.bases[k]
    base = Snapshot(base_path) if base_path else None
    builder = SnapshotBuilder(
        store=FixedDir(dest), base=base, registry=ctx.registry, mode=ctx.mode, now=ctx.now
    )
    for name, rule in ctx.rule_segments:
        with contextlib.suppress(AdtargetError):
            builder.add_rule_segment(name, rule)
    dups: list[tuple[int, int]] = []
    accepted = 0
    if tables:
        keep, dups = _first_in_file_order(pa.concat_tables(tables))
        del tables
        accepted = keep.num_rows
        for batch in keep.to_batches(max_chunksize=1 << 18):
            builder.add_batch(batch)
        del keep
    builder.finish()
    return {"shard": k, "accepted": accepted, "dups": dups, "seconds": time.perf_counter() - t0}


def _first_in_file_order(table: pa.Table) -> tuple[pa.Table, list[tuple[int, int]]]:
    """The good rows whose id is seen first in file order (piece, line), in that order, and
    the (piece, line) of every good row repeating an earlier id.

    Why only the small columns are reordered: taking the whole table into file order and then
    filtering it copied every row twice; this copies the kept rows once.
    """
    order = pc.sort_indices(table, [("__piece", "ascending"), ("__line", "ascending")])
    ids = table.column("user_id").take(order).combine_chunks()
    codes = pc.index_in(ids, value_set=pc.unique(ids)).to_numpy(zero_copy_only=False)
    del ids
    first = np.zeros(len(codes), dtype=bool)
    first[np.unique(codes, return_index=True)[1]] = True
    good = table.column("__good").take(order).to_numpy(zero_copy_only=False)
    dups: list[tuple[int, int]] = []
    dup = good & ~first
    if dup.any():
        pieces = table.column("__piece").take(order).to_numpy()[dup]
        lines = table.column("__line").take(order).to_numpy()[dup]
        dups = list(zip(pieces.tolist(), lines.tolist(), strict=True))
    rows = order.to_numpy()[good & first]
    keep = table.drop_columns(["__piece", "__line", "__good"]).take(pa.array(rows))
    return keep, dups


def duplicate_rejects_task(ctx: BuildContext, piece: int, lines: list[int]) -> list[Reject]:
    """Ray task: the quarantine rows of duplicate ids, as the single-process validator words
    them (the row as read, its original id value)."""
    wanted = set(lines)
    batches, _ = _read(ctx, ctx.pieces[piece])
    validator = _validator(ctx)
    idc = ctx.options.id_column
    out: list[Reject] = []
    for rb in batches:
        rows = [i for i, x in enumerate(rb.lines.tolist()) if x in wanted]
        if not rows:
            continue
        for i, row in zip(rows, rb.batch.take(pa.array(rows)).to_pylist(), strict=True):
            value = row.get(idc)
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="backslashreplace")
            reason = validator._reason(DUPLICATE_ID, idc, value)
            out.append(Reject(int(rb.lines[i]), idc, reason, validator._raw(row)))
    return out
