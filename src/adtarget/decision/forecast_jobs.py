"""Forecast jobs: a forecast that runs in the background, with its progress readable meanwhile.

Why: a long flight over a big log replays for seconds to minutes, longer than a client, a
proxy or a console should hold one request open. ``POST /v1/forecast`` with ``"async": true``
answers 202 with a job; ``GET /v1/forecast/jobs/{id}`` answers its status, progress and, when
done, the forecast. Why files (``data_dir/forecast-jobs/<id>.json``, each write a whole new
file moved into place) and not memory: ``adtarget serve --workers N`` runs N processes, and the
poll may reach another one than the one replaying. A job whose process is gone (a restart)
says so instead of staying "running" forever. Jobs are kept ``KEEP_SECONDS``.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from adtarget.decision.forecast import Progress
from adtarget.errors import AdtargetError
from adtarget.process import pid_alive

KEEP_SECONDS = 24 * 3600
"""How long a finished job's answer stays readable."""
RUNNING_AT_ONCE = 1
"""Forecasts replaying at once per process (each holds the GIL outside its forked replay)."""
WRITE_EVERY_S = 0.2
"""Progress is written at most this often (a stage's end always is)."""

Run = Callable[[Progress], dict[str, Any]]


class ForecastJobs:
    """The jobs under ``root``: ``submit`` starts one, ``get`` reads one (any process).

    Args:
        root: the directory of job files (``data_dir/forecast-jobs``).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._slots = threading.BoundedSemaphore(RUNNING_AT_ONCE)

    def _path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    def _write(self, job: dict[str, Any]) -> None:
        job["updated"] = time.time()
        tmp = self.root / f".{job['id']}.{threading.get_ident()}.tmp"
        tmp.write_bytes(orjson.dumps(job))
        os.replace(tmp, self._path(job["id"]))  # a reader never sees half a job

    def submit(self, run: Run, *, owner: str) -> dict[str, Any]:
        """Start ``run(progress)`` in a background thread; the job as first written.

        ``owner``: who may read it (the caller's ``Principal.actor``; admins read every job).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._prune()
        now = time.time()
        job: dict[str, Any] = {
            "id": secrets.token_hex(8),
            "status": "queued",
            "progress": {"stage": "queued", "done": 0, "total": 0, "fraction": 0.0},
            "created": now,
            "owner": owner,
            "pid": os.getpid(),
        }
        self._write(job)
        threading.Thread(
            target=self._run, args=(dict(job), run), name=f"forecast-{job['id']}", daemon=True
        ).start()
        return job

    def _run(self, job: dict[str, Any], run: Run) -> None:
        last = [0.0]
        stages: list[str] = []

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in stages:
                stages.append(stage)
            now = time.monotonic()
            if now - last[0] < WRITE_EVERY_S and done < total:
                return
            last[0] = now
            job["progress"] = {
                "stage": stage,
                "done": done,
                "total": total,
                "fraction": round(done / total, 4) if total else 0.0,
                "stages_seen": list(stages),
            }
            self._write(job)

        with self._slots:
            job["status"] = "running"
            job["started"] = time.time()
            self._write(job)
            try:
                result = run(progress)
            except AdtargetError as err:
                job.update(status="failed", error=err.to_dict())
            except Exception as exc:  # a job must end in a state, never stay "running"
                job.update(
                    status="failed",
                    error={"code": "internal", "message": f"the forecast failed: {exc!r}"},
                )
            else:
                job.update(status="done", result=result)
                job["progress"] = {**job["progress"], "stage": "done", "fraction": 1.0}
            job["finished"] = time.time()
            self._write(job)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job ``job_id`` (``None`` when unknown); a job whose process is gone is failed."""
        if not job_id.isalnum():
            return None
        try:
            job: dict[str, Any] = orjson.loads(self._path(job_id).read_bytes())
        except FileNotFoundError:
            return None
        if job["status"] in ("queued", "running") and not pid_alive(int(job["pid"])):
            job["status"] = "failed"
            job["error"] = {
                "code": "job_lost",
                "message": "the server process running this forecast stopped; ask again",
            }
        return job

    def _prune(self) -> None:
        """Delete jobs last written more than ``KEEP_SECONDS`` ago."""
        old = time.time() - KEEP_SECONDS
        for path in self.root.glob("*.json"):
            try:
                if path.stat().st_mtime < old:
                    path.unlink()
            except FileNotFoundError:
                continue


_JOBS: dict[Path, ForecastJobs] = {}
_LOCK = threading.Lock()


def jobs_at(root: Path) -> ForecastJobs:
    """The process's ``ForecastJobs`` for ``root`` (one per directory: one running slot)."""
    key = Path(root).resolve()
    with _LOCK:
        found = _JOBS.get(key)
        if found is None:
            found = _JOBS[key] = ForecastJobs(key)
        return found
