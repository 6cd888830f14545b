"""The upload-job repository: every read and write of the ``upload_jobs`` table.

Why here: the ingest package runs jobs but does not own their storage; it asks for jobs by what
it needs ("the live jobs of this file", "who published this snapshot") and gets ``UploadJob``
records back, whose fields it may set inside its own transaction. Session-first
functions: the caller owns the transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adtarget.catalog.tables import UPLOAD_MODES, UploadJob
from adtarget.errors import NotFound

__all__ = [
    "UPLOAD_MODES",
    "UploadJob",
    "add_job",
    "find_job",
    "latest_published_snapshot",
    "live_jobs_of_file",
    "load_job",
    "newest_jobs",
    "snapshot_owner",
    "unfinished_jobs",
]


def find_job(session: Session, job_id: str) -> UploadJob | None:
    """The job, or ``None``."""
    return session.get(UploadJob, job_id)


def load_job(session: Session, job_id: str) -> UploadJob:
    """The job, or ``NotFound`` naming it."""
    job = session.get(UploadJob, job_id)
    if job is None:
        raise NotFound(f"upload job {job_id!r} does not exist", field="id")
    return job


def add_job(session: Session, **fields: Any) -> UploadJob:
    """A new job row (flushed when the caller commits)."""
    job = UploadJob(**fields)
    session.add(job)
    return job


def newest_jobs(session: Session, limit: int) -> list[UploadJob]:
    """The newest jobs first."""
    stmt = select(UploadJob).order_by(UploadJob.created_at.desc()).limit(limit)
    return list(session.scalars(stmt))


def live_jobs_of_file(session: Session, *, checksum: str, mode: str) -> list[UploadJob]:
    """Queued, running or succeeded real (not dry-run) jobs of this file and mode, newest first."""
    stmt = (
        select(UploadJob)
        .where(
            UploadJob.file_checksum == checksum,
            UploadJob.mode == mode,
            UploadJob.status.in_(("queued", "running", "succeeded")),
            UploadJob.dry_run.is_(False),
        )
        .order_by(UploadJob.created_at.desc())
    )
    return list(session.scalars(stmt))


def snapshot_owner(session: Session, snapshot: str, *, other_than: str) -> str | None:
    """The id of a job other than ``other_than`` that published ``snapshot``, if any."""
    stmt = (
        select(UploadJob.id)
        .where(UploadJob.snapshot == snapshot, UploadJob.id != other_than)
        .limit(1)
    )
    return session.scalar(stmt)


def unfinished_jobs(session: Session) -> list[UploadJob]:
    """Jobs still ``queued`` or ``running`` (recovery judges whether their process died)."""
    stmt = select(UploadJob).where(UploadJob.status.in_(("queued", "running")))
    return list(session.scalars(stmt))


def latest_published_snapshot(*, session: Session) -> str | None:
    """The snapshot the newest succeeded (non dry-run) upload published, or ``None`` if none has.

    Why decisions ask: a process that finds no snapshot on disk cannot otherwise tell "nothing
    uploaded yet" (context-only matching is right) from "the snapshot directory is missing"
    (context-only matching would treat every user as unknown and serve rules such as
    ``country not in ("CA")`` to Canadians).
    """
    return session.scalar(
        select(UploadJob.snapshot)
        .where(
            UploadJob.status == "succeeded",
            UploadJob.snapshot.is_not(None),
            UploadJob.dry_run.is_(False),
        )
        .order_by(UploadJob.created_at.desc())
        .limit(1)
    )
