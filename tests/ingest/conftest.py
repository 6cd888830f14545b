"""Fixtures for ingest tests: a migrated catalog, a snapshot store and a job runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.store import SnapshotStore
from adtarget.catalog.db import open_catalog
from adtarget.ingest.jobs import run_upload, submit_upload
from adtarget.settings import Settings

Runner = Callable[..., dict[str, Any]]


@pytest.fixture
def catalog(settings: Settings) -> sessionmaker[Session]:
    """The migrated SQLite catalog of the test's data dir."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return open_catalog(settings)


@pytest.fixture
def store(settings: Settings) -> SnapshotStore:
    """The data dir's snapshot store."""
    return SnapshotStore(settings.snapshots_dir, keep=settings.snapshots_keep)


@pytest.fixture
def ingest(settings: Settings, catalog: sessionmaker[Session]) -> Runner:
    """Submit and run an upload in this thread; returns the final job object."""

    def run(path: Path, mode: str = "replace", **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("actor", "tester")
        job = submit_upload(
            settings=settings, session_factory=catalog, path=path, mode=mode, **kwargs
        )
        if job.get("idempotent"):
            return job
        return run_upload(job["id"], settings=settings, session_factory=catalog)

    return run


def write_csv(path: Path, header: str, *rows: str) -> Path:
    """A CSV file from a header and row lines."""
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path
