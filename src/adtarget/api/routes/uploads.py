"""``POST /v1/uploads`` and ``GET /v1/uploads/{id}``: bulk uploads as background jobs.

Why a thread per job: the job is CPU- and IO-bound Python/Arrow work that must outlive the
request; the route answers 202 at once and clients poll the job row, which the job updates about
once a second. A file can be sent as multipart (saved under ``uploads_dir``) or named by a
server-side ``path`` in a JSON body; reading server paths is for admin keys only.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from adtarget.api.deps import PrincipalDep, SessionFactoryDep, SettingsDep
from adtarget.api.openapi_bodies import check_upload_options
from adtarget.errors import Forbidden, InvalidValue
from adtarget.ingest.jobs import (
    get_job,
    job_is_orphaned,
    list_jobs,
    recover_stale_jobs,
    rejected_rows,
    run_upload,
    submit_upload,
)
from adtarget.settings import Settings

router = APIRouter(tags=["audiences"])
OPTION_FIELDS = (
    "mode",
    "segment",
    "dry_run",
    "id_column",
    "schema",
    "ttl_seconds",
    "hashed",
    "append",
    "delimiter",
    "set_separator",
    "max_field_chars",
    "shards",
    "engine",
)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _flag(name: str, value: Any) -> bool:
    """A JSON boolean, or a form's text for one; anything else is a 422 (``maybe`` was false)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise InvalidValue(f"{name} must be true or false, got {value!r}", field=name)


def _int(name: str, value: Any) -> int:
    """An integer, or a form's text for one; ``true`` and ``1.5`` are not (they became 1)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise InvalidValue(f"{name} must be an integer", field=name)


def _options(raw: dict[str, Any], *, form: bool) -> dict[str, Any]:
    """Job options from a JSON body or form fields (form values arrive as strings), checked
    against the published schema (``api/openapi_bodies.py``): what it refuses is a 422 here."""
    unknown = set(raw) - set(OPTION_FIELDS) - {"path"}
    if unknown:
        raise InvalidValue(
            f"unknown upload fields: {', '.join(sorted(unknown))}", field=sorted(unknown)[0]
        )
    out: dict[str, Any] = {"mode": str(raw.get("mode") or "replace")}
    if raw.get("segment"):
        out["segment"] = str(raw["segment"])
    for name in ("dry_run", "hashed", "append"):
        if name in raw:
            out[name] = _flag(name, raw[name])
    if raw.get("id_column"):
        out["id_column"] = str(raw["id_column"])
    if raw.get("delimiter"):
        out["delimiter"] = str(raw["delimiter"])
    if raw.get("set_separator"):
        out["set_separator"] = str(raw["set_separator"])
    if raw.get("engine"):
        out["engine"] = str(raw["engine"])
    for name in ("ttl_seconds", "max_field_chars", "shards"):
        if raw.get(name) not in (None, ""):
            out[name] = _int(name, raw[name])
    schema = raw.get("schema")
    if isinstance(schema, str) and schema:
        try:
            schema = orjson.loads(schema)
        except orjson.JSONDecodeError:
            raise InvalidValue("schema must be a JSON object", field="schema") from None
    if schema not in (None, ""):
        out["schema"] = schema
    check_upload_options(out, form=form)
    return out


async def _save(upload: UploadFile, settings: Settings) -> Path:
    """Stream a multipart file to ``uploads_dir/incoming`` (keeping its suffix for the format)."""
    name = Path(upload.filename or "upload.csv").name
    dest = settings.uploads_dir / "incoming" / f"{uuid.uuid4().hex[:12]}-{name}"
    dest.parent.mkdir(parents=True, exist_ok=True)

    def copy() -> None:
        with dest.open("wb") as fh:
            shutil.copyfileobj(upload.file, fh, length=1 << 20)

    await run_in_threadpool(copy)
    return dest


def _start(job_id: str, settings: Settings, factory: sessionmaker[Session]) -> None:
    thread = threading.Thread(
        target=run_upload,
        args=(job_id,),
        name=f"upload-{job_id[:8]}",
        kwargs={"settings": settings, "session_factory": factory},
        daemon=True,
    )
    thread.start()


@router.post("/v1/uploads", status_code=202)
async def create_upload(
    request: Request, settings: SettingsDep, factory: SessionFactoryDep, principal: PrincipalDep
) -> JSONResponse:
    """Queue an upload job (multipart ``file`` or JSON ``{"path", "mode", ...}``); 202."""
    ctype = request.headers.get("content-type", "")
    path: Path | str
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidValue("multipart upload needs a 'file' part", field="file")
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
        options = _options(fields, form=True)
        path = await _save(upload, settings)
    else:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise InvalidValue("body must be JSON or multipart/form-data", field="body") from None
        if not isinstance(body, dict) or not body.get("path"):
            raise InvalidValue(
                "JSON body needs 'path' (or send the file as multipart)", field="path"
            )
        if not principal.is_admin:
            raise Forbidden(
                "only admin keys may ingest a server-side path; send the file as multipart instead",
                field="path",
            )
        options = _options(body, form=False)
        path = str(body["path"])  # a server path or an object-store URI (s3://...)

    def submit() -> dict[str, Any]:
        recover_stale_jobs(settings=settings, session_factory=factory)
        return submit_upload(
            settings=settings, session_factory=factory, path=path, actor=principal.actor, **options
        )

    job = await run_in_threadpool(submit)
    if job["status"] == "queued" and not job.get("idempotent"):
        _start(job["id"], settings, factory)  # an idempotent hit is already being run
    return JSONResponse(job, status_code=202)


@router.get("/v1/uploads/{job_id}")
async def read_upload(
    job_id: str, factory: SessionFactoryDep, settings: SettingsDep
) -> dict[str, Any]:
    """The job: status, rows read/accepted/rejected so far, quarantine path, snapshot.

    A job still ``queued``/``running`` whose process died is marked failed before answering."""

    def read() -> dict[str, Any]:
        job = get_job(job_id, session_factory=factory)
        if job["status"] in ("queued", "running") and job_is_orphaned(
            job_id, session_factory=factory
        ):
            recover_stale_jobs(settings=settings, session_factory=factory)
            job = get_job(job_id, session_factory=factory)
        return job

    return await run_in_threadpool(read)


@router.get("/v1/uploads", summary="Upload jobs, newest first")
async def list_uploads(
    factory: SessionFactoryDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    """``{"uploads": [job, ...]}``: the same job objects as ``GET /v1/uploads/{id}``."""
    jobs = await run_in_threadpool(lambda: list_jobs(session_factory=factory, limit=limit))
    return {"uploads": jobs}


@router.get("/v1/uploads/{job_id}/rejected", summary="A job's rejected rows with their reasons")
async def read_rejected(
    job_id: str, factory: SessionFactoryDep, limit: Annotated[int, Query(ge=1, le=5000)] = 200
) -> dict[str, Any]:
    """``{"id", "total", "rows": [{"line", "field", "reason", "row"}, ...]}`` (first ``limit``)."""
    return await run_in_threadpool(
        lambda: dict(rejected_rows(job_id, session_factory=factory, limit=limit))
    )
