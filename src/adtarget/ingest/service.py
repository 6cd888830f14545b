"""The body of an upload job: read → validate → quarantine → build → (dry-run report | publish).

Why staged: everything this job writes goes to a staged snapshot directory (inside the snapshot
store, named after this pid) and the job's ``work`` dir; only ``SnapshotStore.publish`` (an
atomic rename + pointer swap, run as the ``upload_publish`` command) makes it visible. A job
killed anywhere before that leaves the previous snapshot serving; its leftovers are removed by
``recover_stale_jobs`` / ``SnapshotStore.clean_stale`` on the next start.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pyarrow as pa
from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.build import Mode, SnapshotBuilder
from adtarget.audience.compaction import compact, stamp_manifest
from adtarget.audience.shard_build import ShardedBuilder
from adtarget.audience.sharded import AnySnapshot, ShardedSnapshot
from adtarget.audience.store import UPDATES_THROUGH, SnapshotStore
from adtarget.audience.stores import live_follower
from adtarget.catalog.segments import segment_ttl
from adtarget.catalog.upload_jobs import UploadJob
from adtarget.delivery.files import delimiter_hint
from adtarget.errors import AdtargetError, Conflict, IngestFailed, InvalidValue
from adtarget.ingest.finish import (
    RowCounter,
    check_ratio,
    finish_report,
    publish_upload,
    rule_segment_texts,
    succeed_job,
)
from adtarget.ingest.hashed import HEX64_RE, hashed_to_ids
from adtarget.ingest.job_rows import Progress, job_dir, update_job
from adtarget.ingest.publish import snapshot_store
from adtarget.ingest.quarantine import QuarantineWriter
from adtarget.ingest.ray_build import run_ray_build
from adtarget.ingest.readers import open_reader
from adtarget.ingest.schema import check_width, load_registry, resolve_dimensions
from adtarget.ingest.validate import USER_ID, BatchValidator, ValidationOptions
from adtarget.objectstore import resolve
from adtarget.settings import Settings

T = TypeVar("T")


class _Stopwatch:
    """Seconds spent per stage, reported on the job (where does an upload's time go?)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - t0, 3)

    def timed(self, stage: str, items: Iterable[T]) -> Iterator[T]:
        """Iterate ``items``, charging the time spent producing each one to ``stage``."""
        it = iter(items)
        while True:
            with self(stage):
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item


def _header_hint(columns: list[str], delimiter: str) -> str:
    """What to change when the id column is missing: the delimiter, or the id column's name."""
    return delimiter_hint(columns, delimiter) or "name the id column with --id-column"


def execute_job(
    job: UploadJob,
    *,
    settings: Settings,
    session_factory: sessionmaker[Session],
    progress: Progress | None = None,
) -> None:
    """Run one claimed job; raises ``AdtargetError`` on failure (the caller marks it failed)."""
    opts: dict[str, Any] = dict((job.report or {}).get("_options", {}))
    id_column = str(opts.get("id_column") or USER_ID)
    path = resolve(job.source_path)  # a local path or an object-store URI
    separator = str(opts.get("set_separator") or "|")
    reader = open_reader(
        path,
        batch_rows=settings.ingest_batch_rows,
        delimiter=str(opts.get("delimiter") or ","),
        set_separator=separator,
    )
    segment_mode = job.mode == "segment"
    if id_column not in reader.columns and segment_mode and len(reader.columns) == 1:
        id_column = reader.columns[0]  # a one-column list file: that column is the id
    if not reader.columns and path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        raise InvalidValue(
            f"{path.name}: no line is a JSON object such as "
            '{"user_id": "u1", "country": "US"}; JSON Lines need one object per line',
            field="path",
        )
    if id_column not in reader.columns:
        raise InvalidValue(
            f"the file has no id column {id_column!r} (columns: "
            f"{', '.join(reader.columns)}); "
            + _header_hint(reader.columns, str(opts.get("delimiter") or ",")),
            field="id_column",
        )
    with session_factory() as session:
        registry = load_registry(session)
    columns = [id_column] if segment_mode else list(reader.columns)
    specs, new_dims = resolve_dimensions(
        columns=columns,
        id_column=id_column,
        registry=registry,
        arrow_schema=reader.arrow_schema,
        declared=opts.get("schema") or {},
    )
    check_width(dimensions=len(specs), limit=settings.ingest_max_dimensions, source=path.name)
    hashed = bool(opts.get("hashed"))
    vopts = ValidationOptions(
        id_column=id_column,
        id_pattern=HEX64_RE if hashed else None,
        id_kind="SHA-256 hex digest" if hashed else "string",
        strict_columns=not segment_mode,
        set_separator=separator,
        max_field_chars=int(opts.get("max_field_chars") or 256),
    )
    validator = BatchValidator(
        specs, columns, options=vopts, raw_delimiter=getattr(reader, "delimiter", None)
    )
    suffix = ".csv" if reader.format == "csv" else ".jsonl"
    qpath = job_dir(settings, job.id) / f"quarantine{suffix}"
    quarantine = QuarantineWriter(qpath)
    store = snapshot_store(settings)
    through = None if segment_mode or job.dry_run else updates_at_start(store, settings, job.mode)
    base = store.current_base()
    previous = base.version if base is not None else None
    total = getattr(getattr(reader, "_file", None), "metadata", None)
    counter = RowCounter(
        job.id, session_factory, progress, total.num_rows if total is not None else None
    )
    shards = opts.get("shards") or (base.num_shards if isinstance(base, ShardedSnapshot) else None)
    build_mode: Mode = "replace" if job.mode == "replace" else "upsert"
    if build_mode == "upsert" and base is not None and not segment_mode:
        check_width(
            dimensions=len(set(specs) | set(base.registry)),
            limit=settings.ingest_max_dimensions,
            source=path.name,
            upsert=True,
        )
    if opts.get("engine") == "ray" and not segment_mode:
        run_ray_build(
            job,
            settings=settings,
            session_factory=session_factory,
            reader=reader,
            validator=validator,
            quarantine=quarantine,
            counter=counter,
            store=store,
            base=base,
            specs=specs,
            new_dims=new_dims,
            shards=int(shards or 1),
            mode=build_mode,
            opts=opts,
        )
        return
    builder: SnapshotBuilder | ShardedBuilder
    if shards:
        builder = ShardedBuilder(
            store=store, base=base, registry=specs, shards=int(shards), mode=build_mode
        )
    else:
        assert not isinstance(base, ShardedSnapshot)
        builder = SnapshotBuilder(store=store, base=base, registry=specs, mode=build_mode)
    _add_rule_segments(builder, session_factory)
    seg_ids: list[pa.Array] = []
    try:
        clock = _Stopwatch()
        for rb in clock.timed("read", reader):
            with clock("validate"):
                vb = validator.validate(rb)
                good = vb.good
                quarantine.write(vb.rejects)
            with clock("build"):
                if segment_mode:
                    seg_ids.append(good.column(USER_ID))
                elif isinstance(builder, SnapshotBuilder) and good.num_rows:
                    builder.add_batch(good, hashes=vb.hashes)
                elif good.num_rows:
                    builder.add_batch(good)
            counter.add(good.num_rows, len(vb.rejects))
        validator.forget_ids()
        counter.add(0, 0, stage="building")
        quarantine.close()
        report = finish_report(job, settings, counter, quarantine, specs, new_dims)
        report["seconds"] = clock.seconds
        try:
            check_ratio(settings, counter, report)
        except IngestFailed as exc:
            if not job.dry_run:
                raise
            report["would_fail"] = exc.message  # a dry run still reports what it found
        if segment_mode:
            ids = (
                pa.chunked_array(seg_ids, pa.string()).combine_chunks()
                if seg_ids
                else pa.array([], pa.string())
            )
            if hashed:
                received = len(ids)
                ids = _hashed_ids(ids, base)
            stats = builder.set_segment(
                str(job.segment),
                ids,
                ttl_seconds=_segment_ttl(session_factory, job, opts),
                append=bool(opts.get("append")),
            )
            if hashed:
                stats["ids_received"] = received
                stats["unmatched"] = received - stats["matched"]
                stats["match_rate"] = (stats["matched"] / received) if received else 0.0
            report["segment"] = stats
            report["match_rate"] = stats["match_rate"]
        if job.dry_run:
            report["diff"] = builder.diff()
            builder.discard()
            succeed_job(
                job.id,
                session_factory,
                counter,
                quarantine,
                report,
                snapshot=None,
                previous=previous,
            )
            return
        with clock("finish"):
            staged = builder.finish()
        if through is not None:  # updates accepted after this point are replayed on top
            stamp_manifest(staged, **{UPDATES_THROUGH: through})
        update_job(
            job.id,
            session_factory=session_factory,
            report={"_publishing": {"previous": previous}, "stage": "publishing"},
        )
        with clock("publish"):
            publish_upload(job, settings, session_factory, store, staged, previous, new_dims, opts)
        succeed_job(
            job.id, session_factory, counter, quarantine, report, snapshot=None, previous=previous
        )
    except BaseException:
        quarantine.close()
        builder.discard()
        update_job(
            job.id,
            session_factory=session_factory,
            rows_read=counter.read,
            rows_accepted=counter.accepted,
            rows_rejected=counter.rejected,
            quarantine_path=str(quarantine.path) if quarantine.written else None,
        )
        raise


def _hashed_ids(digests: pa.Array, base: AnySnapshot | None) -> pa.Array:
    """``hashed_to_ids`` over the snapshot, or over each of its shards in turn."""
    if not isinstance(base, ShardedSnapshot):
        return hashed_to_ids(digests, base)
    parts = [hashed_to_ids(digests, shard) for shard in base.shards]
    return pa.chunked_array(parts, pa.string()).combine_chunks()


def _segment_ttl(
    session_factory: sessionmaker[Session], job: UploadJob, opts: dict[str, Any]
) -> int | None:
    """The upload's TTL, else the segment's own ``ttl_seconds``, else none."""
    if opts.get("ttl_seconds"):
        return int(opts["ttl_seconds"])
    with session_factory() as session:
        ttl = segment_ttl(session, job.segment)
    return int(ttl) if ttl else None


def _add_rule_segments(
    builder: SnapshotBuilder | ShardedBuilder, session_factory: sessionmaker[Session]
) -> None:
    """Materialize the catalog's rule segments in the new snapshot (bad rules are skipped)."""
    for name, rule in rule_segment_texts(session_factory):
        try:
            builder.add_rule_segment(name, rule)
        except AdtargetError:
            continue


def updates_at_start(store: SnapshotStore, settings: Settings, mode: str) -> int:
    """The last profile update an upload starting now contains (stamped on its version).

    A replace holds none of the users' earlier updates (the file is the population), so it
    is the log's newest number. An upsert keeps everyone the file does not name, so the
    pending updates are folded into the base first (a compaction) and it holds exactly those.
    Either way, every update accepted after this point is replayed on top of the upload.
    """
    follower = live_follower(settings)
    if mode == "replace":
        return follower.log.last_seq()
    with contextlib.suppress(Conflict):  # another publish won: build on what is current now
        compact(store, follower, wait=True)
    base = store.current_base()
    if base is None:
        return 0
    follower.live(base)
    seq, parts = follower.frozen_parts()
    # what is pending changes nobody on this base (deletes of unknown users)
    if not any(users for users, _ in parts):
        return seq
    return int(base.manifest.get(UPDATES_THROUGH) or 0)
