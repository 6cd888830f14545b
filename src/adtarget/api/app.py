"""The FastAPI application: routers, the one error handler, the guard middleware, lifespan.

Why a factory: ``adtarget serve`` runs ``create_app`` in every worker process (uvicorn
``--factory``), and tests build apps with their own ``Settings``. Nothing is opened at import
time or by ``create_app``: the lifespan builds the worker's container once (``api.container``:
catalog sessions, key cache, snapshot store, event store, decision engine and its index holder)
and closes it at shutdown. A worker whose container cannot be built (the catalog is down) still
starts: ``/healthz`` answers, ``/readyz`` and every other route say 503 and why.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from adtarget import __version__
from adtarget.api.container import Container, build_container
from adtarget.api.deps import allow
from adtarget.api.docs import install_docs
from adtarget.api.errors import install_error_handlers
from adtarget.api.head import head_as_get, serves_get_only
from adtarget.api.middleware import GuardMiddleware
from adtarget.api.openapi import install_openapi
from adtarget.api.routes import (
    audiences,
    catalog,
    commands,
    decisions,
    events,
    forecast,
    formats,
    health,
    keys,
    me,
    profiles,
    tracking,
    uploads,
    vast,
)
from adtarget.console.mount import mount_console
from adtarget.ingest.jobs import recover_stale_jobs
from adtarget.settings import Settings, get_settings

log = logging.getLogger("adtarget.api")

DESCRIPTION = """Ads audience targeting: catalog with undo, exact audiences, decisions, reports.

Send `Authorization: Bearer KEY` (see `adtarget keys create`). Errors are
`{"error": {"code", "message", "field"}}`.
"""


def _start(settings: Settings) -> Container:
    """The worker's container, plus the start-up work that needs it."""
    container = build_container(settings)
    container.key_resolver.open_mode()  # open mode is decided here, once (see api/auth.py)
    # An upload killed with the previous service answers "failed" at once, not "running".
    recover_stale_jobs(settings=settings, session_factory=container.session_factory)
    return container


_frozen = False


def _freeze_once() -> None:
    """Move what the first app warmed up out of the collector's generations (once a process).

    Why: a served worker's index, catalog and snapshot handles live as long as the worker, and
    every full collection would re-scan them on some request's time. Once per process, so a test
    process building many apps does not pin each one's garbage.
    """
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the worker's container once, close it at shutdown (a nested start reuses it)."""
    owned = getattr(app.state, "container", None) is None
    if owned:
        try:
            app.state.container = await run_in_threadpool(_start, app.state.settings)
        except Exception as exc:  # the node still starts; /readyz reports what is missing
            log.exception("start-up failed; /readyz will say what is not ready")
            app.state.container_error = f"{type(exc).__name__}: {exc}"
    _freeze_once()
    yield
    container: Container | None = getattr(app.state, "container", None)
    if owned and container is not None:
        container.close()
        app.state.container = None


def _include_domain_routers(app: FastAPI) -> None:
    """Routers other modules own, each with the roles that may read and change through it."""
    # Undo/redo/history: the router checks roles itself (undo is per actor, so per key).
    app.include_router(commands.router)
    # Sizing/overlap/export: the router checks roles per route (readers may size); an
    # advertiser key's rules may not name another advertiser's segments (checked on the parsed
    # rule, in the audience service: see api/scope.py).
    app.router.routes.append(audiences.SIZE_ROUTE)  # ahead of its documented twin
    app.include_router(audiences.router)
    # The ad-format registry: everyone but ad servers reads, admins add (the router says so).
    app.include_router(formats.router)
    # Uploads replace or extend everyone's user features: admin keys only may post.
    app.include_router(uploads.router, dependencies=[Depends(allow(read=("reader",), write=()))])
    # Real-time profile updates change everyone's features like an upload: admin keys only.
    app.include_router(profiles.router, dependencies=[Depends(allow(read=(), write=()))])
    # Forecasts: readers and advertisers (their own campaigns, checked in the route).
    app.include_router(forecast.router)
    # Ad servers post delivery events with their decisions key; reports are scoped in the route.
    app.include_router(
        events.router,
        dependencies=[
            Depends(allow(read=("reader", "advertiser"), write=("decisions",), writers_read=False))
        ],
    )


class AdtargetAPI(FastAPI):
    """FastAPI behind one ``GuardMiddleware``, with a fast path for ``POST /v1/decisions``.

    Why: the FastAPI stack (error middleware, exception handlers, exit stacks, matching every
    route) costs several times the decision itself. Decision requests go from the guard straight
    to the raw ASGI handler (which never raises and renders its own errors); everything else
    takes the normal FastAPI path. Both share the same guard, so the in-flight bound covers all
    routes of the worker.
    """

    guard: GuardMiddleware

    def install_guard(self, *, max_inflight: int, max_body_bytes: int) -> None:
        """Put the guard in front of the whole app (called once by ``create_app``)."""
        self.guard = GuardMiddleware(
            self._dispatch, max_inflight=max_inflight, max_body_bytes=max_body_bytes
        )
        self.guard.on_catalog_write = self._wake_index

    def _wake_index(self) -> None:
        """A catalog write just succeeded in this worker: its decision index checks now."""
        container: Container | None = getattr(self.state, "container", None)
        if container is not None:
            container.decisions.wake()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.guard(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == decisions.PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await decisions.decisions_asgi(scope, receive, send)
            return
        if tracking.beacon_params(scope) is not None:  # beacons too (api/routes/tracking.py)
            scope["app"] = self
            await tracking.track_asgi(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "HEAD" and serves_get_only(self, scope):
            await head_as_get(super().__call__, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the adtarget HTTP application.

    Args:
        settings: configuration for this app; ``None`` reads ``ADTARGET_*`` from the environment.
    """
    settings = settings if settings is not None else get_settings()
    app = AdtargetAPI(
        title="adtarget",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # served from an installed package by install_docs, not from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    app.install_guard(max_inflight=settings.max_inflight, max_body_bytes=settings.max_body_bytes)
    app.include_router(health.router)
    decisions.mount(app)
    app.router.routes.append(tracking.ROUTE)
    app.include_router(vast.router)
    app.include_router(catalog.router)
    app.include_router(keys.router)
    app.include_router(me.router)
    _include_domain_routers(app)
    mount_console(app)
    return app
