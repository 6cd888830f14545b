"""Upload jobs: submit (idempotent by checksum), run, read, and recover after a crash.

Why jobs and not a function call: a 10M-row upload takes seconds to minutes, so the API answers
202 at once and clients poll ``GET /v1/uploads/{id}``. The job row in the catalog's
``upload_jobs`` table is the single truth for progress and outcome, whichever process runs it.
A job records the pid running it; a later start finds jobs left ``running`` by a dead process
(SIGKILL, power loss), marks them failed and removes their partial output, while the previous
snapshot keeps serving because nothing was published (see ``ingest.publish``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.sharding import check_shards
from adtarget.audience.stores import snapshot_store_for
from adtarget.catalog.coltypes import utcnow
from adtarget.catalog.upload_jobs import (
    UPLOAD_MODES,
    UploadJob,
    add_job,
    find_job,
    live_jobs_of_file,
    load_job,
    newest_jobs,
    snapshot_owner,
    unfinished_jobs,
)
from adtarget.errors import AdtargetError, IngestFailed, InvalidValue
from adtarget.ingest.job_rows import Progress, job_dir, update_job
from adtarget.ingest.publish import publish_empty
from adtarget.ingest.quarantine import read_quarantine
from adtarget.ingest.readers import open_reader
from adtarget.ingest.schema import check_width, load_schema_file, parse_schema
from adtarget.ingest.service import execute_job
from adtarget.objectstore import Location, resolve
from adtarget.process import pid_alive
from adtarget.settings import Settings

HOST = socket.gethostname()


def file_checksum(path: Path | Location) -> str:
    """SHA-256 of the file (local or in an object store), streamed in 4 MiB chunks."""
    digest = hashlib.sha256()
    loc = resolve(path)
    with loc.open_input() as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def job_to_dict(job: UploadJob) -> dict[str, Any]:
    """The public job object (``GET /v1/uploads/{id}``, ``adtarget ingest --json``)."""
    report = dict(job.report or {})
    return {
        "id": job.id,
        "status": job.status,
        "mode": job.mode,
        "segment": job.segment,
        "dry_run": job.dry_run,
        "source_path": job.source_path,
        "file_checksum": job.file_checksum,
        "rows_read": job.rows_read,
        "rows_accepted": job.rows_accepted,
        "rows_rejected": job.rows_rejected,
        "quarantine": job.quarantine_path,
        "snapshot": job.snapshot,
        "previous_snapshot": job.previous_snapshot,
        "error": job.error,
        "report": {k: v for k, v in report.items() if not k.startswith("_")},
        "actor": job.actor,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        **({"shards": shards} if (shards := report.get("_options", {}).get("shards")) else {}),
    }


def get_job(job_id: str, *, session_factory: sessionmaker[Session]) -> dict[str, Any]:
    """The job object, or ``NotFound``."""
    with session_factory() as session:
        return job_to_dict(load_job(session, job_id))


def list_jobs(*, session_factory: sessionmaker[Session], limit: int = 50) -> list[dict[str, Any]]:
    """The newest upload jobs first (the console's uploads page, ``GET /v1/uploads``)."""
    with session_factory() as session:
        return [job_to_dict(job) for job in newest_jobs(session, limit)]


class RejectedRows(TypedDict):
    """A job's first quarantined rows (``rows``) and how many it rejected (``total``)."""

    id: str
    total: int
    rows: list[dict[str, Any]]


def rejected_rows(
    job_id: str, *, session_factory: sessionmaker[Session], limit: int = 200
) -> RejectedRows:
    """The first ``limit`` quarantined rows of a job with their reasons, and how many there are."""

    job = get_job(job_id, session_factory=session_factory)
    path = job["quarantine"]
    rows = read_quarantine(Path(path)) if path and Path(path).exists() else []
    return {"id": job_id, "total": job["rows_rejected"], "rows": rows[:limit]}


def _header_width(src: Location, id_column: str, delimiter: str, set_separator: str) -> int:
    """Dimension columns named by the file's header; 0 when it cannot be read (the job then
    fails with the reader's own message, as for any unreadable file)."""
    try:
        reader = open_reader(
            src, batch_rows=1, delimiter=delimiter or ",", set_separator=set_separator
        )
    except AdtargetError:
        return 0
    return sum(1 for c in reader.columns if c != id_column)


def submit_upload(
    *,
    settings: Settings,
    session_factory: sessionmaker[Session],
    path: Path | str,
    mode: str,
    segment: str | None = None,
    actor: str,
    dry_run: bool = False,
    id_column: str = "user_id",
    schema: Mapping[str, str] | Path | str | None = None,
    ttl_seconds: int | None = None,
    hashed: bool = False,
    append: bool = False,
    delimiter: str = ",",
    set_separator: str = "|",
    max_field_chars: int = 256,
    shards: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Queue an upload of ``path``; returns the job object (status ``queued``).

    Re-submitting a file with the same checksum, mode, segment and options as a job still
    queued/running, or as the succeeded upload whose snapshot is still current, returns that
    job (with ``"idempotent": true``) instead of a new one: nothing is published twice, and a
    client retrying a slow upload joins the job under way instead of racing it. Once another
    snapshot was published (or the upload was undone), the same file is a new upload again, so
    re-submitting always ends with the file's audience in place.

    Args:
        path: a local path or an object-store URI (``s3://bucket/key``; see ``objectstore``).
        mode: ``replace`` (the file is the whole population), ``upsert`` or ``segment``.
        segment: the list segment's name (``segment`` mode only).
        schema: ``{"dimension": "type"}`` for columns not yet registered, or a JSON file of it.
        ttl_seconds: membership TTL for a segment upload.
        hashed: segment ids are SHA-256 hex digests of the user ids.
        append: add this list's members to the segment (each upload keeps its own TTL)
            instead of replacing the segment's members.
        delimiter: CSV field delimiter; set_separator splits CSV set cells (``a|b``).
        max_field_chars: longer cells are rejected (``value longer than N characters``).
        shards: build a snapshot of this many shards (users placed by ``shard_of``).
        engine: ``local`` (this process) or ``ray`` (Ray Data reads, Ray tasks build shards).
        ray_address: the Ray cluster to build on (else ``ADTARGET_RAY_ADDRESS``, else local).
    """
    src = resolve(path)
    if mode not in UPLOAD_MODES:
        raise InvalidValue(f"mode {mode!r} is not one of {', '.join(UPLOAD_MODES)}", field="mode")
    if mode == "segment" and not segment:
        raise InvalidValue("a segment upload needs a segment name", field="segment")
    if mode != "segment" and (segment or hashed or append):
        raise InvalidValue("segment/hashed/append only apply to mode 'segment'", field="segment")
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise InvalidValue("ttl_seconds must be positive", field="ttl_seconds")
    if not src.is_file():
        raise InvalidValue(f"upload file {src.uri!r} does not exist", field="path")
    declared = (
        load_schema_file(schema)
        if isinstance(schema, str | Path)
        else parse_schema(dict(schema))
        if schema is not None
        else {}
    )
    checksum = file_checksum(src)
    if not set_separator:
        raise InvalidValue("set_separator must not be empty", field="set_separator")
    if max_field_chars < 1:
        raise InvalidValue("max_field_chars must be positive", field="max_field_chars")
    if shards is not None:
        check_shards(shards)
    if engine not in ("local", "ray"):
        raise InvalidValue(f"engine {engine!r} is not local or ray", field="engine")
    if engine == "ray" and shards is None:
        raise InvalidValue(
            "--engine ray builds a sharded snapshot: give --shards N", field="shards"
        )
    if mode != "segment":  # a file too wide is refused before it becomes a job
        check_width(
            dimensions=_header_width(src, id_column, delimiter, set_separator),
            limit=settings.ingest_max_dimensions,
            source=src.name,
        )
    options = {
        "id_column": id_column,
        "schema": declared,
        "ttl_seconds": ttl_seconds,
        "hashed": hashed,
        "append": append,
        "delimiter": delimiter,
        "set_separator": set_separator,
        "max_field_chars": max_field_chars,
        "shards": shards,
        "engine": engine,
        "ray_address": ray_address,
    }
    with session_factory() as session:
        if not dry_run:
            done = live_jobs_of_file(session, checksum=checksum, mode=mode)
            current = snapshot_store_for(settings)
            current_version = current.current_version()
            for job in done:
                rep = job.report or {}
                old = rep.get("_options", {})
                if (
                    job.segment == segment
                    and not rep.get("undone")
                    and (job.status != "succeeded" or job.snapshot == current_version)
                    and old.get("id_column", "user_id") == id_column
                    and bool(old.get("append")) == append
                    and old.get("shards") == shards
                ):
                    out = job_to_dict(job)
                    out["idempotent"] = True
                    return out
        job = add_job(
            session,
            id=uuid.uuid4().hex,
            status="queued",
            mode=mode,
            segment=segment,
            source_path=str(src.local.resolve()) if src.local is not None else src.uri,
            file_checksum=checksum,
            dry_run=dry_run,
            actor=actor,
            report={"_options": options, "_pid": os.getpid(), "_host": HOST},
        )
        session.commit()
        return job_to_dict(job)


def claim_job(job_id: str, *, session_factory: sessionmaker[Session]) -> UploadJob:
    """Move a queued job to ``running`` under this pid; ``InvalidValue`` if it is not queued."""
    with session_factory() as session:
        job = load_job(session, job_id)
        if job.status != "queued":
            raise InvalidValue(f"upload job {job_id} is {job.status}, not queued", field="status")
        job.status = "running"
        job.started_at = utcnow()
        job.report = {**(job.report or {}), "_pid": os.getpid(), "_host": HOST}
        session.commit()
        session.expunge(job)
        return job


def fail_job(
    job_id: str, error: AdtargetError | str, *, session_factory: sessionmaker[Session]
) -> None:
    """Mark the job failed with a message people can act on."""
    message = error.message if isinstance(error, AdtargetError) else str(error)
    update_job(
        job_id,
        session_factory=session_factory,
        status="failed",
        error=message,
        finished_at=utcnow(),
        report={"stage": "done"},
    )


def _undo_half_publish(
    session: Session, settings: Settings, job_id: str, previous: str | None
) -> bool:
    """A job killed between the snapshot rename and its catalog commit left its version
    current with no job or command owning it: point ``CURRENT`` back to ``previous``."""

    store = snapshot_store_for(settings)
    current = store.current_version()
    if current is None or current == previous:
        return False
    owned = snapshot_owner(session, current, other_than=job_id)
    if owned is not None:
        return False
    if previous is not None and previous in store.versions():
        store.rollback(previous)
    else:
        publish_empty(store)
    return True


def job_is_orphaned(job_id: str, *, session_factory: sessionmaker[Session]) -> bool:
    """True when a ``queued``/``running`` job was claimed on this host by a process now dead."""
    with session_factory() as session:
        job = find_job(session, job_id)
        if job is None or job.status not in ("queued", "running"):
            return False
        rep = job.report or {}
    pid, host = rep.get("_pid"), rep.get("_host")
    return host == HOST and isinstance(pid, int) and pid != os.getpid() and not pid_alive(pid)


def recover_stale_jobs(*, settings: Settings, session_factory: sessionmaker[Session]) -> list[str]:
    """Mark jobs left ``queued``/``running`` by a dead process failed; remove partial output.

    Called when the API or CLI starts an upload. Only jobs claimed on this host are judged
    (another host's pid means nothing here). A job killed inside its publish step is undone
    (``CURRENT`` back to the previous version) unless its publish command had committed, in
    which case it is marked succeeded. Returns the ids it marked failed.
    """
    snapshot_store_for(settings).clean_stale()
    failed: list[str] = []
    with session_factory() as session:
        for job in unfinished_jobs(session):
            rep = job.report or {}
            pid, host = rep.get("_pid"), rep.get("_host")
            if host != HOST or not isinstance(pid, int) or (pid != os.getpid() and pid_alive(pid)):
                continue
            if pid == os.getpid():
                continue
            job.finished_at = utcnow()
            if job.status == "queued":  # its submitter died before starting it
                job.status = "failed"
                job.error = (
                    f"the process that submitted this job (pid {pid}) died before "
                    "starting it; nothing was published"
                )
                failed.append(job.id)
                continue
            if job.snapshot is not None:  # its publish command committed: the upload is done
                job.status = "succeeded"
                continue
            job.status = "failed"
            job.error = f"the process running this job (pid {pid}) died; nothing was published"
            publishing = rep.get("_publishing")
            if isinstance(publishing, dict) and _undo_half_publish(
                session, settings, job.id, publishing.get("previous")
            ):
                job.error = (
                    f"the process running this job (pid {pid}) died while publishing; "
                    "the previous snapshot was restored"
                )
            failed.append(job.id)
        session.commit()
    for job_id in failed:
        shutil.rmtree(job_dir(settings, job_id) / "work", ignore_errors=True)
    return failed


def run_upload(
    job_id: str,
    *,
    settings: Settings,
    session_factory: sessionmaker[Session],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run a queued job to the end in this thread; returns the final job object.

    Failures (unreadable file, too many bad rows, a concurrent publish) end as ``failed`` with
    ``error`` set, never as an exception, so callers always get the job back.
    """
    job = claim_job(job_id, session_factory=session_factory)
    try:
        execute_job(job, settings=settings, session_factory=session_factory, progress=progress)
    except AdtargetError as exc:
        fail_job(job_id, exc, session_factory=session_factory)
    except Exception as exc:  # noqa: BLE001 - any crash must still end the job visibly
        fail_job(
            job_id, IngestFailed(f"{type(exc).__name__}: {exc}"), session_factory=session_factory
        )
    finally:
        shutil.rmtree(job_dir(settings, job_id) / "work", ignore_errors=True)
    return get_job(job_id, session_factory=session_factory)
