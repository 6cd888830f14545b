"""Re-submitting the same file while its job is still queued or running joins that job; a job
whose submitter died before starting it is failed on the next start (so it cannot block)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from adtarget.audience.store import SnapshotStore
from adtarget.catalog.tables import UploadJob
from adtarget.cli import ingest as ingest_cli
from adtarget.cli.main import app as main_app
from adtarget.ingest.jobs import (
    HOST,
    get_job,
    recover_stale_jobs,
    run_upload,
    submit_upload,
)
from adtarget.settings import Settings, get_settings

from .conftest import write_csv

DEAD_PID = 2**22 + 4242  # above pid_max on typical systems: never alive


def _pop(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "pop.csv", "user_id,country", "u1,US", "u2,CA")


def _own(catalog: sessionmaker[Session], job_id: str, pid: int) -> None:
    with catalog() as s:
        row = s.get(UploadJob, job_id)
        assert row is not None
        row.report = {**(row.report or {}), "_pid": pid, "_host": HOST}
        s.commit()


def test_resubmit_while_queued_returns_the_same_job(
    settings: Settings, tmp_path: Path, catalog: sessionmaker[Session], store: SnapshotStore
) -> None:
    kw = {
        "settings": settings,
        "session_factory": catalog,
        "actor": "t",
        "mode": "replace",
        "path": _pop(tmp_path),
        "schema": {"country": "category"},
    }
    first = submit_upload(**kw)  # type: ignore[arg-type]
    second = submit_upload(**kw)  # type: ignore[arg-type]
    assert second["id"] == first["id"] and second["idempotent"] is True
    assert second["status"] == "queued"
    dry = submit_upload(**kw, dry_run=True)  # type: ignore[arg-type]
    assert dry["id"] != first["id"]  # a dry run is never joined to a real one
    done = run_upload(first["id"], settings=settings, session_factory=catalog)
    assert done["status"] == "succeeded" and store.versions() == [done["snapshot"]]


def test_queued_job_of_a_dead_submitter_fails_and_unblocks(
    settings: Settings, tmp_path: Path, catalog: sessionmaker[Session]
) -> None:
    kw = {
        "settings": settings,
        "session_factory": catalog,
        "actor": "t",
        "mode": "replace",
        "path": _pop(tmp_path),
        "schema": {"country": "category"},
    }
    orphan = submit_upload(**kw)  # type: ignore[arg-type]
    _own(catalog, orphan["id"], DEAD_PID)
    assert recover_stale_jobs(settings=settings, session_factory=catalog) == [orphan["id"]]
    got = get_job(orphan["id"], session_factory=catalog)
    assert got["status"] == "failed" and "before starting it" in got["error"]
    again = submit_upload(**kw)  # type: ignore[arg-type]
    assert again["id"] != orphan["id"] and not again.get("idempotent")
    # a job queued by this (live) process is left alone
    assert recover_stale_jobs(settings=settings, session_factory=catalog) == []
    assert get_job(again["id"], session_factory=catalog)["status"] == "queued"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.delenv("ADTARGET_DATA_DIR", raising=False)
    names = {
        c.name or (c.callback.__name__ if c.callback else "") for c in main_app.registered_commands
    }
    if "ingest" not in names:
        ingest_cli.register(main_app)
    yield main_app
    get_settings.cache_clear()


def test_cli_joins_a_job_another_process_left_running(app: typer.Typer, tmp_path: Path) -> None:
    """The CLI waits for the other process's job instead of racing it; when that process is
    dead the wait ends with the job failed (and a later run publishes normally)."""
    from adtarget.catalog.db import open_catalog

    data = tmp_path / "data"
    schema = tmp_path / "s.json"
    schema.write_text('{"country": "category"}')
    pop = _pop(tmp_path)
    runner = CliRunner()
    args = ["--data-dir", str(data), "ingest", str(pop), "--schema", str(schema), "--json"]
    res = runner.invoke(app, [*args, "--dry-run"])  # creates the catalog
    assert res.exit_code == 0, res.output
    settings = get_settings()
    catalog = open_catalog(settings)
    job = submit_upload(
        settings=settings,
        session_factory=catalog,
        path=pop,
        mode="replace",
        actor="api",
        schema=schema,
    )
    with catalog() as s:
        row = s.get(UploadJob, job["id"])
        assert row is not None
        row.status = "running"
        s.commit()
    _own(catalog, job["id"], DEAD_PID)
    # the CLI's own start-up recovery fails the dead job first, so this run is a fresh one
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["id"] != job["id"] and out["status"] == "succeeded"
    assert get_job(job["id"], session_factory=catalog)["status"] == "failed"
    # same file again: joins the succeeded job, publishes nothing new
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and json.loads(res.stdout)["id"] == out["id"]
    assert json.loads(res.stdout)["idempotent"] is True


def test_cli_waits_for_the_same_file_running_elsewhere(app: typer.Typer, tmp_path: Path) -> None:
    """A live process (here ``sleep``) owns the running job; the CLI joins it and reports its
    outcome once it ends, without running the file a second time."""
    import subprocess
    import threading

    from adtarget.catalog.coltypes import utcnow
    from adtarget.catalog.db import open_catalog

    data = tmp_path / "data"
    pop = _pop(tmp_path)
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "--data-dir",
            str(data),
            "ingest",
            str(pop),
            "--dry-run",
            "--schema",
            str(tmp_path / "missing.json"),
        ],
    )
    assert res.exit_code == 2  # (only to create the data dir + catalog)
    settings = get_settings()
    catalog = open_catalog(settings)
    job = submit_upload(
        settings=settings,
        session_factory=catalog,
        path=pop,
        mode="upsert",
        actor="api",
        schema={"country": "category"},
    )
    owner = subprocess.Popen(["sleep", "30"])
    try:
        with catalog() as s:
            row = s.get(UploadJob, job["id"])
            assert row is not None
            row.status = "running"
            s.commit()
        _own(catalog, job["id"], owner.pid)

        def finish() -> None:
            with catalog() as s:
                row = s.get(UploadJob, job["id"])
                assert row is not None
                row.status, row.rows_read, row.finished_at = "succeeded", 2, utcnow()
                s.commit()

        timer = threading.Timer(0.8, finish)
        timer.start()
        res = runner.invoke(
            app, ["--data-dir", str(data), "ingest", str(pop), "--mode", "upsert", "--json"]
        )
        timer.join()
    finally:
        owner.kill()
        owner.wait()
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["id"] == job["id"] and out["idempotent"] is True and out["rows_read"] == 2
    assert "already being ingested" in res.stderr
    assert SnapshotStore(settings.snapshots_dir).versions() == []  # the CLI ran nothing


def test_same_file_after_another_publish_is_applied_again(
    settings: Settings, tmp_path: Path, catalog: sessionmaker[Session], store: SnapshotStore
) -> None:
    """Idempotent means "ends with this file's audience": A, B, then A again republishes A."""
    a = write_csv(tmp_path / "a.csv", "user_id,country", "u1,US", "u2,CA")
    b = write_csv(tmp_path / "b.csv", "user_id,country", "u9,FR")

    def run(path: Path) -> dict[str, object]:
        job = submit_upload(
            settings=settings,
            session_factory=catalog,
            path=path,
            mode="replace",
            actor="t",
            schema={"country": "category"},
        )
        if job.get("idempotent"):
            return job
        return run_upload(job["id"], settings=settings, session_factory=catalog)

    first = run(a)
    assert run(a)["id"] == first["id"]  # nothing published since: a no-op
    run(b)
    again = run(a)
    assert again["id"] != first["id"] and again["status"] == "succeeded"
    snap = store.current()
    assert snap is not None and snap.num_users == 2 and snap.ordinal_of("u9") is None
