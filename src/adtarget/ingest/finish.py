"""The end of an upload job, shared by the in-process and the Ray engines: progress counts, the
report, the error-ratio gate, the publish command and the job's success row.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.store import SnapshotStore
from adtarget.catalog import segments
from adtarget.catalog.coltypes import utcnow
from adtarget.catalog.upload_jobs import UploadJob
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.errors import IngestFailed
from adtarget.ingest.job_rows import Progress, update_job
from adtarget.ingest.publish import PublishUpload, dimension_payload
from adtarget.ingest.quarantine import QuarantineWriter
from adtarget.settings import Settings

PROGRESS_EVERY_S = 1.0


class RowCounter:
    """Rows read/accepted/rejected, pushed to the job row and the callback about once a second."""

    def __init__(
        self,
        job_id: str,
        session_factory: sessionmaker[Session],
        progress: Progress | None,
        total: int | None,
    ) -> None:
        self.job_id, self.session_factory, self.progress = job_id, session_factory, progress
        self.total = total
        self.read = self.accepted = self.rejected = 0
        self.stage = "reading"
        self._last = 0.0

    def add(
        self, accepted: int, rejected: int, *, force: bool = False, stage: str | None = None
    ) -> None:
        """Count rows; every ~1 s (or when forced / the stage changes) publish progress."""
        self.accepted += accepted
        self.rejected += rejected
        self.read = self.accepted + self.rejected
        if stage is not None:
            self.stage, force = stage, True
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            update_job(
                self.job_id,
                session_factory=self.session_factory,
                rows_read=self.read,
                rows_accepted=self.accepted,
                rows_rejected=self.rejected,
                report={"stage": self.stage, "total_rows": self.total},
            )
            if self.progress is not None:
                self.progress(
                    {
                        "rows_read": self.read,
                        "rows_accepted": self.accepted,
                        "rows_rejected": self.rejected,
                        "total_rows": self.total,
                        "stage": self.stage,
                    }
                )


def rule_segment_texts(session_factory: sessionmaker[Session]) -> list[tuple[str, str]]:
    """The catalog's active rule segments as (name, rule text)."""

    with session_factory() as session:
        return segments.rule_segment_texts(session)


def finish_report(
    job: UploadJob,
    settings: Settings,
    counter: RowCounter,
    quarantine: QuarantineWriter,
    specs: dict[str, Any],
    new_dims: list[Any],
) -> dict[str, Any]:
    ratio = counter.rejected / counter.read if counter.read else 0.0
    return {
        "error_ratio": round(ratio, 6),
        "max_error_ratio": settings.ingest_max_error_ratio,
        "rejected_by_field": dict(quarantine.by_field),
        "dimensions": sorted(specs),
        "new_dimensions": dimension_payload(new_dims),
    }


def check_ratio(settings: Settings, counter: RowCounter, report: dict[str, Any]) -> None:
    if counter.read == 0:
        raise IngestFailed("the file holds no rows", field="path")
    if report["error_ratio"] > settings.ingest_max_error_ratio:
        raise IngestFailed(
            f"{counter.rejected} of {counter.read} rows rejected "
            f"({report['error_ratio']:.2%} > {settings.ingest_max_error_ratio:.2%}, the limit "
            "ADTARGET_INGEST_MAX_ERROR_RATIO sets); nothing was published: fix the rows in the "
            "quarantine file, or raise the limit if these rows may be dropped",
            field="rows_rejected",
        )


def publish_upload(
    job: UploadJob,
    settings: Settings,
    session_factory: sessionmaker[Session],
    store: SnapshotStore,
    staged: Path,
    previous: str | None,
    new_dims: list[Any],
    opts: dict[str, Any],
) -> None:
    cmd = PublishUpload(
        job_id=job.id,
        previous=previous,
        staged=str(staged),
        segment=job.segment,
        ttl_seconds=opts.get("ttl_seconds"),
        new_dimensions=dimension_payload(new_dims),
    )
    writer = CatalogWriter(
        session_factory, actor=job.actor, depth=settings.history_depth, settings=settings
    )
    writer.execute(cmd)


def succeed_job(
    job_id: str,
    session_factory: sessionmaker[Session],
    counter: RowCounter,
    quarantine: QuarantineWriter,
    report: dict[str, Any],
    *,
    snapshot: str | None,
    previous: str | None,
) -> None:
    fields: dict[str, Any] = {
        "status": "succeeded",
        "finished_at": utcnow(),
        "rows_read": counter.read,
        "rows_accepted": counter.accepted,
        "rows_rejected": counter.rejected,
        "quarantine_path": str(quarantine.path) if quarantine.written else None,
        "previous_snapshot": previous,
        "report": {**report, "stage": "done"},
    }
    if snapshot is not None:
        fields["snapshot"] = snapshot
    update_job(job_id, session_factory=session_factory, **fields)
