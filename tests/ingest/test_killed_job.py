"""An upload whose process was killed answers ``failed`` as soon as the service starts, or as
soon as a client polls it, not only when the next upload is submitted."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from adtarget.api.app import create_app
from adtarget.catalog.tables import UploadJob
from adtarget.ingest.jobs import HOST, get_job, submit_upload
from adtarget.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

DEAD_PID = 2**22 + 12345  # above pid_max on typical systems: never alive


def _killed_job(settings: Settings, catalog: sessionmaker[Session], tmp_path: Path) -> str:
    path = tmp_path / "u.csv"
    path.write_text("user_id,country\nu1,US\nu2,CA\n")
    job = submit_upload(
        settings=settings, session_factory=catalog, path=path, mode="replace", actor="t"
    )
    with catalog() as s:
        row = s.get(UploadJob, job["id"])
        assert row is not None
        row.status = "running"
        row.report = {**(row.report or {}), "_pid": DEAD_PID, "_host": HOST}
        s.commit()
    return str(job["id"])


def test_service_start_marks_a_killed_job_failed(
    settings: Settings, catalog: sessionmaker[Session], tmp_path: Path
) -> None:
    job_id = _killed_job(settings, catalog, tmp_path)
    with TestClient(create_app(settings)):  # the lifespan runs: the service has started
        got = get_job(job_id, session_factory=catalog)
    assert got["status"] == "failed" and "died" in got["error"]


def test_polling_a_killed_job_answers_failed(
    settings: Settings,
    catalog: sessionmaker[Session],
    tmp_path: Path,
    started: Callable[..., TestClient],
) -> None:
    app = create_app(settings)
    client = started(app, raise_server_exceptions=False)  # a service started before the kill
    job_id = _killed_job(settings, catalog, tmp_path)
    got = client.get(f"/v1/uploads/{job_id}")
    assert got.status_code == 200 and got.json()["status"] == "failed", got.text
