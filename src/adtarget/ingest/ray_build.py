"""``adtarget ingest FILE --shards N --engine ray``: read with Ray Data, build shards as Ray tasks.

Why this shape (and not Ray Data's own CSV/JSON readers): the result must equal the
single-process path row for row — same validation, same quarantine lines — so each Ray Data
task reads one piece of the file with the ordinary readers (``ingest.pieces``) and validates it
with the ordinary ``BatchValidator``. The only check that needs the whole file is "duplicate
user id": a duplicate always hashes to the same shard, so it is decided per shard, in file order
(piece, line), by the shard's build task. Steps:

1. Ray Data maps ``read_piece_task`` over the pieces: validated rows are split by
   ``shard_of`` into Arrow files ``_parts/shard-K/piece-I.arrow`` inside the staged version
   (shared storage), rejects into ``_parts/rejects/piece-I.arrow``.
2. One Ray task per shard (``build_shard_task``) drops duplicate ids and builds the shard with
   ``SnapshotBuilder`` into ``shard-K/``. Ray retries a task whose worker or node died; a task
   that still fails makes the job fail naming the shard, and nothing is published.
3. The driver writes the quarantine file in line order, checks the error ratio, writes the top
   manifest and publishes once, through the same undoable ``upload_publish`` command.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.ipc as ipc

from adtarget.audience.build import Mode
from adtarget.audience.ray_runtime import TaskFailed, connect, map_pieces, run_tasks
from adtarget.audience.shard_build import shard_bases
from adtarget.audience.sharded import AnySnapshot, write_manifest
from adtarget.audience.sharding import shard_name
from adtarget.errors import IngestFailed, InvalidValue
from adtarget.ingest.finish import (
    check_ratio,
    finish_report,
    publish_upload,
    rule_segment_texts,
    succeed_job,
)
from adtarget.ingest.pieces import line_offset, plan_pieces, read_header
from adtarget.ingest.ray_tasks import (
    CRASH_ENV,
    PARTS,
    BuildContext,
    build_shard_task,
    duplicate_rejects_task,
    read_piece_task,
)
from adtarget.ingest.validate import BatchValidator, Reject
from adtarget.rules.registry import DimensionSpec

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from adtarget.audience.store import SnapshotStore
    from adtarget.catalog.upload_jobs import UploadJob
    from adtarget.ingest.quarantine import QuarantineWriter
    from adtarget.settings import Settings

__all__ = ["CRASH_ENV", "run_ray_build"]


def run_ray_build(
    job: UploadJob,
    *,
    settings: Settings,
    session_factory: sessionmaker[Session],
    reader: Any,
    validator: BatchValidator,
    quarantine: QuarantineWriter,
    counter: Any,
    store: SnapshotStore,
    base: AnySnapshot | None,
    specs: dict[str, DimensionSpec],
    new_dims: list[Any],
    shards: int,
    mode: Mode,
    opts: dict[str, Any],
) -> None:
    """The Ray engine's part of ``execute_job``: build, check, publish once (or nothing)."""
    if job.dry_run:
        raise InvalidValue("--dry-run is not available with --engine ray", field="engine")
    ray = connect(opts.get("ray_address") or settings.ray_address)
    uri = str(job.source_path)
    fmt = reader.format
    workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    pieces = plan_pieces(uri, fmt, pieces=max(2 * workers, shards))
    staged = store.staging_dir()
    bases = [str(s.path) if s is not None else None for s in shard_bases(base, shards, mode)]
    ctx = BuildContext(
        staged=str(staged),
        shards=shards,
        mode=mode,
        registry=specs,
        columns=list(reader.columns),
        options=validator.options,
        raw_delimiter=validator.raw_delimiter,
        batch_rows=settings.ingest_batch_rows,
        delimiter=str(opts.get("delimiter") or ","),
        set_separator=str(opts.get("set_separator") or "|"),
        header=read_header(uri) if fmt == "csv" else b"",
        pieces=pieces,
        bases=bases,
        rule_segments=rule_segment_texts(session_factory),
        now=float(os.environ.get("ADTARGET_BUILD_NOW", "0")) or _now(),
        crash=os.environ.get(CRASH_ENV) or None,
    )
    published = False
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 3)
        clock = now

    try:
        counter.add(0, 0, stage="reading")
        read = map_pieces(
            functools.partial(read_piece_task, ctx), [{"piece": p.index} for p in pieces]
        )
        lap("read")
        counter.add(0, sum(int(r["rejected"]) for r in read), stage="building")
        try:
            built = run_tasks(build_shard_task, [(ctx, k) for k in range(shards)])
        except TaskFailed as exc:
            raise IngestFailed(
                f"shard {exc.index} could not be built ({exc.cause}); nothing was published",
                field="shard",
                shard=exc.index,
            ) from None
        lap("build")
        offsets = _line_offsets(fmt, read, header_lines=ctx.header.count(b"\n"))
        dup_rejects = _duplicate_rejects(ctx, built, run_tasks)
        _write_quarantine(quarantine, staged, offsets, dup_rejects)
        counter.add(sum(int(b["accepted"]) for b in built), len(dup_rejects), force=True)
        quarantine.close()
        report = finish_report(job, settings, counter, quarantine, specs, new_dims)
        report["shards"] = shards
        report["pieces"] = len(pieces)
        report["workers"] = workers
        check_ratio(settings, counter, report)
        shutil.rmtree(staged / PARTS, ignore_errors=True)
        write_manifest(
            staged,
            shard_dirs=[staged / shard_name(k) for k in range(shards)],
            mode=mode,
            base_version=base.version if base is not None else None,
            now=ctx.now,
            extra={"engine": "ray"},
        )
        previous = base.version if base is not None else None
        lap("finish")
        counter.add(0, 0, stage="publishing")
        publish_upload(job, settings, session_factory, store, staged, previous, new_dims, opts)
        published = True
        lap("publish")
        # wall seconds per stage, and the seconds the read and build tasks themselves took
        # (their sum over the stage's wall times the workers: how busy the workers were)
        report["seconds"] = seconds
        report["task_seconds"] = {
            "read": round(sum(float(r["seconds"]) for r in read), 3),
            "build": round(sum(float(b["seconds"]) for b in built), 3),
        }
        succeed_job(
            job.id, session_factory, counter, quarantine, report, snapshot=None, previous=previous
        )
    finally:
        quarantine.close()
        if not published:
            shutil.rmtree(staged, ignore_errors=True)


def _now() -> float:

    return time.time()


def _line_offsets(fmt: Any, read: list[dict[str, Any]], *, header_lines: int) -> list[int]:
    """Per piece, what turns its local line numbers into the file's."""
    out: list[int] = []
    before = header_lines
    for r in read:
        out.append(line_offset(fmt, before))
        before += int(r["newlines"])
    return out


def _duplicate_rejects(
    ctx: BuildContext, built: list[dict[str, Any]], run: Any
) -> list[tuple[int, Reject]]:
    """(piece, reject) for every row a shard task found to repeat an earlier id."""
    by_piece: dict[int, list[int]] = {}
    for b in built:
        for piece, line in b["dups"]:
            by_piece.setdefault(int(piece), []).append(int(line))
    if not by_piece:
        return []
    calls = [(ctx, piece, lines) for piece, lines in sorted(by_piece.items())]
    found: list[list[Reject]] = run(duplicate_rejects_task, calls)
    return [
        (piece, r) for (_, piece, _), rejects in zip(calls, found, strict=True) for r in rejects
    ]


def _write_quarantine(
    quarantine: QuarantineWriter,
    staged: Path,
    offsets: list[int],
    dup_rejects: list[tuple[int, Reject]],
) -> None:
    """Every reject, with the file's line numbers, in line order."""
    rows: list[Reject] = []
    for piece, offset in enumerate(offsets):
        path = staged / PARTS / "rejects" / f"piece-{piece:06d}.arrow"
        if not path.exists():
            raise InvalidValue(f"piece {piece} left no rejects file", field="piece")
        for rec in ipc.open_file(path).read_all().to_pylist():
            rows.append(Reject(rec["line"] + offset, rec["field"], rec["reason"], rec["raw"]))
    rows.extend(dataclasses.replace(r, line=r.line + offsets[p]) for p, r in dup_rejects)
    rows.sort(key=lambda r: r.line)
    quarantine.write(rows)
