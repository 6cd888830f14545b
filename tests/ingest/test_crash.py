"""A job SIGKILLed mid-way leaves the previous snapshot serving; the next start cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.store import SnapshotStore
from adtarget.ingest.jobs import get_job, recover_stale_jobs, submit_upload
from adtarget.settings import Settings

from .conftest import Runner, write_csv

CHILD = """
import sys
from pathlib import Path
from adtarget.catalog.db import open_catalog
from adtarget.ingest.jobs import run_upload
from adtarget.settings import Settings
s = Settings(data_dir=Path(sys.argv[1]), ingest_batch_rows=2000)
run_upload(sys.argv[2], settings=s, session_factory=open_catalog(s))
"""


def _big_parquet(path: Path, n: int) -> Path:
    rng = np.random.default_rng(1)
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([f"user{i}" for i in range(n)]),
                "country": pa.array(rng.choice(["US", "CA", "FR"], n)),
                "age": pa.array(rng.integers(18, 80, n)),
            }
        ),
        path,
    )
    return path


def _run_and_kill(
    settings: Settings,
    catalog: sessionmaker[Session],
    store: SnapshotStore,
    job_id: str,
    moment: str,
) -> None:
    """Run the job in a child process and SIGKILL it at ``moment``: ``reading`` (rows counted,
    nothing staged yet) or ``staging`` (the new snapshot directory is half written)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(settings.data_dir), job_id], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if moment == "staging":
                if list(store.root.glob(f".tmp-{child.pid}-*")):
                    break
            else:
                state = get_job(job_id, session_factory=catalog)
                if state["status"] != "queued" and state["rows_read"] > 0:
                    break
            assert child.poll() is None, "the child finished before it could be killed"
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("moment", ["reading", "staging"])
def test_sigkill_mid_job_keeps_previous_snapshot(
    ingest: Runner,
    tmp_path: Path,
    settings: Settings,
    store: SnapshotStore,
    catalog: sessionmaker[Session],
    moment: str,
) -> None:
    first = ingest(
        write_csv(tmp_path / "a.csv", "user_id,country", "a,US", "b,CA"),
        schema={"country": "category"},
    )
    v1 = first["snapshot"]
    job = submit_upload(
        settings=settings,
        session_factory=catalog,
        mode="replace",
        actor="t",
        path=_big_parquet(tmp_path / "big.parquet", 400_000),
    )
    _run_and_kill(settings, catalog, store, job["id"], moment)
    state = get_job(job["id"], session_factory=catalog)
    assert state["status"] == "running" and state["snapshot"] is None
    if moment == "staging":  # the half-written build is there, but nobody can see it
        assert list(store.root.glob(".tmp-*"))
    assert store.current_version() == v1 and store.versions() == [v1]
    assert store.current().num_users == 2  # type: ignore[union-attr]
    # a reader starting now (a new process) sees v1 and removes the dead build's directory
    assert SnapshotStore(settings.snapshots_dir).current().num_users == 2  # type: ignore[union-attr]

    assert recover_stale_jobs(settings=settings, session_factory=catalog) == [job["id"]]
    state = get_job(job["id"], session_factory=catalog)
    assert state["status"] == "failed" and "died" in state["error"]
    assert not list(store.root.glob(".tmp-*"))
    assert store.versions() == [v1]
    again = ingest(write_csv(tmp_path / "c.csv", "user_id,country", "z,US"))
    assert again["status"] == "succeeded" and store.current().num_users == 1  # type: ignore[union-attr]


def test_recover_rolls_back_a_publish_killed_before_its_commit(
    ingest: Runner,
    tmp_path: Path,
    settings: Settings,
    store: SnapshotStore,
    catalog: sessionmaker[Session],
) -> None:
    from adtarget.audience.build import SnapshotBuilder
    from adtarget.catalog.tables import UploadJob
    from adtarget.ingest.jobs import HOST

    v1 = ingest(
        write_csv(tmp_path / "a.csv", "user_id,country", "a,US"), schema={"country": "category"}
    )["snapshot"]
    job = submit_upload(
        settings=settings,
        session_factory=catalog,
        mode="replace",
        actor="t",
        path=write_csv(tmp_path / "b.csv", "user_id,country", "b,US", "c,US"),
    )
    # what a job killed right after store.publish (before the catalog commit) leaves behind
    builder = SnapshotBuilder(store=store, base=store.current(), registry={}, mode="replace")
    orphan = store.publish(builder.finish())
    with catalog() as s:
        row = s.get(UploadJob, job["id"])
        assert row is not None
        row.status = "running"
        row.report = {
            **(row.report or {}),
            "_pid": 2**22 + 999,
            "_host": HOST,
            "_publishing": {"previous": v1},
        }
        s.commit()
    assert store.current_version() == orphan
    assert recover_stale_jobs(settings=settings, session_factory=catalog) == [job["id"]]
    assert store.current_version() == v1
    assert "previous snapshot was restored" in get_job(job["id"], session_factory=catalog)["error"]
