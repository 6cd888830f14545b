"""The upload job's row and directory: the few writes both the job runner and the job body make.

Why apart from ``jobs``: ``jobs`` runs a job by calling ``service.execute_job``, and the job body
reports progress through these; living here, neither module needs the other back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog.upload_jobs import load_job
from adtarget.settings import Settings

Progress = Callable[[dict[str, Any]], None]


def job_dir(settings: Settings, job_id: str) -> Path:
    """The job's own directory under ``uploads_dir`` (quarantine, uploaded copy, work files)."""
    return settings.uploads_dir / job_id


def update_job(job_id: str, *, session_factory: sessionmaker[Session], **fields: Any) -> None:
    """Write progress or the outcome to the job row (``report`` is merged, not replaced)."""
    with session_factory() as session:
        job = load_job(session, job_id)
        report = fields.pop("report", None)
        for key, value in fields.items():
            setattr(job, key, value)
        if report:
            job.report = {**(job.report or {}), **report}
        session.commit()
