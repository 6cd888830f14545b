"""Liveness, readiness and Prometheus metrics; no auth (load balancers and scrapers call them).

Why readiness differs from liveness: ``/healthz`` only says the process answers (restart me if
not); ``/readyz`` says whether this node should get traffic: the decision index is loaded and we
know which audience snapshot is live. A catalog outage alone reports ``degraded`` with 200: the
node still answers decisions from its in-memory index, and failing readiness on every node at
once (the catalog is shared) would turn a partial outage into a total one.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.responses import Response

from adtarget.api.container import container_of
from adtarget.api.deps import app_key_resolver, app_session_factory, app_snapshot_store
from adtarget.api.metrics import render_metrics
from adtarget.catalog.service import latest_published_snapshot
from adtarget.errors import AdtargetError

log = logging.getLogger("adtarget.api")

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    """Always 200 while the event loop runs."""
    return {"status": "ok"}


def _check_catalog(request: Request) -> dict[str, Any]:
    try:
        with app_session_factory(request.app)() as session:
            session.execute(text("SELECT 1"))
        return {"ok": True}
    except Exception as exc:  # readiness reports any failure, it never raises
        log.warning("readyz: catalog check failed: %s", exc)
        return {"ok": False, "error": type(exc).__name__}


def _check_snapshot(request: Request) -> dict[str, Any]:
    try:
        snap = app_snapshot_store(request.app).current()
    except Exception as exc:
        log.warning("readyz: snapshot check failed: %s", exc)
        return {"ok": False, "error": type(exc).__name__}
    if snap is None:
        expected = _published_snapshot(request)
        if expected is not None:
            # The catalog says a snapshot is live but this node has none (lost or unmounted
            # storage): its decisions are degraded, so take it out of rotation.
            return {"ok": False, "error": "missing", "expected": expected}
        # No upload yet: decisions still work on context only, so the node is ready.
        return {"ok": True, "version": None}
    # The directory this worker maps: every worker of one `serve` names the same one.
    return {
        "ok": True,
        "version": snap.version,
        "users": snap.num_users,
        "path": str(snap.path.resolve()),
    }


def _published_snapshot(request: Request) -> str | None:
    try:
        with app_session_factory(request.app)() as session:
            return latest_published_snapshot(session=session)
    except Exception as exc:  # the catalog check reports the outage itself
        log.warning("readyz: cannot ask the catalog for the live snapshot: %s", exc)
        return None


def _check_index(request: Request) -> dict[str, Any]:
    return container_of(request.app).decisions.status()


@router.get("/readyz", summary="Readiness: index loaded, snapshot known (catalog reported)")
def readyz(request: Request) -> JSONResponse:
    """200 when the node can answer decisions (``degraded`` if only the catalog is down), else
    503 with the failing check named."""
    if getattr(request.app.state, "container", None) is None:
        reason = getattr(request.app.state, "container_error", None) or "not started"
        down = {"ok": False, "error": reason}
        checks = {"catalog": down, "index": down, "snapshot": down}
        return JSONResponse(
            {"status": "not_ready", "worker": os.getpid(), "checks": checks}, status_code=503
        )
    checks = {
        "catalog": _check_catalog(request),
        "index": _check_index(request),
        "snapshot": _check_snapshot(request),
        "profiles": _check_profiles(request),
    }
    serving = bool(checks["index"].get("ok") and checks["snapshot"].get("ok"))
    shared_ok = checks["catalog"]["ok"] and checks["profiles"]["ok"]
    status = "not_ready" if not serving else "ready" if shared_ok else "degraded"
    code = 200 if serving else 503
    if not _may_see_details(request):
        # Anyone may ask (load balancers); pids, paths and errors are for keys that read.
        brief = {name: {"ok": bool(c.get("ok"))} for name, c in checks.items()}
        return JSONResponse({"status": status, "checks": brief}, status_code=code)
    return JSONResponse(
        {"status": status, "worker": os.getpid(), "checks": checks}, status_code=code
    )


def _check_profiles(request: Request) -> dict[str, Any]:
    """The profile store's own check (Redis reachable and holding its live version)."""
    service = container_of(request.app).decisions
    store = getattr(getattr(service, "engine", None), "profiles", None)
    check = getattr(store, "check", None)
    if check is None:
        return {"ok": True}
    try:
        return dict(check())
    except Exception as exc:  # readiness reports any failure, it never raises
        return {"ok": False, "error": type(exc).__name__}


def _may_see_details(request: Request) -> bool:
    """Admin and reader keys (and open mode) see every detail; others see only ok flags."""
    try:
        principal = app_key_resolver(request.app).resolve(request.headers.get("authorization"))
    except AdtargetError:
        return False
    return principal.role in ("admin", "reader")


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus_metrics() -> Response:
    """Prometheus text exposition (all workers when ``PROMETHEUS_MULTIPROC_DIR`` is set)."""
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
