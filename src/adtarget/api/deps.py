"""FastAPI dependencies named once: the container, settings, catalog session, principal, actor,
snapshot store, event store.

Why per-app state instead of module globals: tests build several apps with different
``Settings`` in one process, and each ``adtarget serve`` worker owns its own engine and stores.
They only hand out what the lifespan built (``api.container``); nothing is created here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from adtarget.api.auth import OPEN_PRINCIPAL, ROLES, KeyResolver, Principal
from adtarget.api.container import Container, container_of
from adtarget.audience.store import SnapshotStore
from adtarget.delivery.store import EventStore
from adtarget.errors import Forbidden, NotFound
from adtarget.settings import Settings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def app_settings(app: FastAPI) -> Settings:
    """The settings this app was created with (``app.state.settings``)."""
    settings: Settings = app.state.settings
    return settings


async def get_settings(request: Request) -> Settings:
    """Dependency: the app's settings; override per app by passing them to ``create_app``."""
    return app_settings(request.app)


def app_session_factory(app: FastAPI) -> sessionmaker[Session]:
    """The app's catalog session factory (from the container the lifespan built)."""
    return container_of(app).session_factory


def app_key_resolver(app: FastAPI) -> KeyResolver:
    """The app's cached API-key resolver."""
    return container_of(app).key_resolver


def app_snapshot_store(app: FastAPI) -> SnapshotStore:
    """The app's snapshot store (one per app; ``current()`` sees other processes' publishes)."""
    return container_of(app).snapshot_store


async def get_container(request: Request) -> Container:
    """Dependency: everything the worker built once (503 while it could not build it)."""
    return container_of(request.app)


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    """Dependency: the catalog session factory (for the command layer, which owns commits)."""
    return app_session_factory(request.app)


def get_session(request: Request) -> Iterator[Session]:
    """Dependency: one catalog session per request; commit on success, rollback on error."""
    session = app_session_factory(request.app)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


async def get_principal(request: Request) -> Principal:
    """Dependency: the caller, from ``Authorization: Bearer KEY`` (401 when missing/unknown).

    Async on purpose: FastAPI runs a sync dependency in the threadpool, one hand-off each; a
    key already in the resolver's cache is answered on the event loop, and only a lookup that
    needs the catalog goes to a thread."""
    cached = request.scope.get("adtarget.principal")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    resolver = app_key_resolver(request.app)
    header = request.headers.get("authorization")
    principal = resolver.resolve_cached(header)
    if principal is None:
        principal = await run_in_threadpool(resolver.resolve, header)
    request.scope["adtarget.principal"] = principal
    return principal


async def get_actor(principal: Annotated[Principal, Depends(get_principal)]) -> str:
    """Dependency: the actor string recorded in command history."""
    return principal.actor


async def get_snapshot_store(request: Request) -> SnapshotStore:
    """Dependency: the app's snapshot store."""
    return app_snapshot_store(request.app)


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: the principal, or 403 unless its role is one of ``roles``.

    Admin is always allowed. Use as ``Depends(require_roles("advertiser", "reader"))``.
    """
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    allowed = frozenset(roles) | {"admin"}

    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(
                f"role {principal.role!r} may not call this route "
                f"(allowed: {', '.join(sorted(allowed))})",
                field="authorization",
            )
        return principal

    return dependency


def allow(
    *, read: tuple[str, ...], write: tuple[str, ...], writers_read: bool = True
) -> Callable[..., Awaitable[Principal]]:
    """Router-level dependency: ``read`` roles may GET, ``write`` roles may also mutate.

    ``writers_read=False`` makes ``write`` roles write-only (ad servers post delivery events
    with their decisions key but must not read reports).
    """
    readers = frozenset(read) | (frozenset(write) if writers_read else frozenset()) | {"admin"}
    writers = frozenset(write) | {"admin"}

    async def dependency(
        request: Request, principal: Annotated[Principal, Depends(get_principal)]
    ) -> Principal:
        ok = writers if request.method not in READ_METHODS else readers
        if principal.role not in ok:
            verb = "read" if request.method in READ_METHODS else "change"
            raise Forbidden(
                f"role {principal.role!r} may not {verb} {request.url.path}",
                field="authorization",
            )
        return principal

    return dependency


def ensure_advertiser_scope(principal: Principal, advertiser_id: int | None) -> None:
    """Raise 404 unless ``principal`` may see objects of ``advertiser_id``.

    Advertiser keys only see their own advertiser's objects; a foreign object answers 404 (not
    403) so a key cannot even learn that another advertiser's ids exist. Objects without an
    advertiser (global segments, dimensions) are visible, and changing them is checked by the
    caller with ``require_roles``.
    """
    if principal.role != "advertiser" or advertiser_id is None:
        return
    if advertiser_id != principal.advertiser_id:
        raise NotFound("no such object for this advertiser key", field="id")


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ActorDep = Annotated[str, Depends(get_actor)]
SnapshotStoreDep = Annotated[SnapshotStore, Depends(get_snapshot_store)]
ContainerDep = Annotated[Container, Depends(get_container)]


async def get_event_store(container: ContainerDep) -> EventStore:
    """Dependency: the delivery event store (intake, reports; the spend feed shares it)."""
    return container.event_store


EventStoreDep = Annotated[EventStore, Depends(get_event_store)]

# Named here too, beside the dependencies that hand them out.
__all__ = ["OPEN_PRINCIPAL", "ROLES", "Principal"]
