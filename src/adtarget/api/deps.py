"""FastAPI dependencies named once: settings, catalog session, principal, actor, snapshot store.

Why per-app state instead of module globals: tests build several apps with different
``Settings`` in one process, and each ``adtarget serve`` worker owns its own engine and stores.
Everything expensive (engine, key cache, snapshot store) is created lazily once per app and kept
on ``app.state``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request
from sqlalchemy.orm import Session, sessionmaker

from adtarget.api.auth import OPEN_PRINCIPAL, ROLES, KeyResolver, Principal
from adtarget.errors import Forbidden, NotFound
from adtarget.settings import Settings

if TYPE_CHECKING:
    from adtarget.audience.store import SnapshotStore

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_state_lock = threading.Lock()


def app_settings(app: FastAPI) -> Settings:
    """The settings this app was created with (``app.state.settings``)."""
    settings: Settings = app.state.settings
    return settings


def get_settings(request: Request) -> Settings:
    """Dependency: the app's settings; override per app by passing them to ``create_app``."""
    return app_settings(request.app)


def _lazy(app: FastAPI, name: str, make: Callable[[], Any]) -> Any:
    value = getattr(app.state, name, None)
    if value is None:
        with _state_lock:
            value = getattr(app.state, name, None)
            if value is None:
                value = make()
                setattr(app.state, name, value)
    return value


def app_session_factory(app: FastAPI) -> sessionmaker[Session]:
    """The app's catalog session factory (opened and migrated on first use)."""
    from adtarget.catalog.db import open_catalog

    factory: sessionmaker[Session] = _lazy(
        app, "session_factory", lambda: open_catalog(app_settings(app))
    )
    return factory


def app_key_resolver(app: FastAPI) -> KeyResolver:
    """The app's cached API-key resolver."""
    resolver: KeyResolver = _lazy(
        app,
        "key_resolver",
        lambda: KeyResolver(
            session_factory=lambda: app_session_factory(app),
            admin_key=app_settings(app).admin_key,
            allow_open=app_settings(app).allow_open,
        ),
    )
    return resolver


def app_snapshot_store(app: FastAPI) -> SnapshotStore:
    """The app's snapshot store (one per app; ``current()`` sees other processes' publishes)."""
    from adtarget.audience.stores import snapshot_store_for

    def make() -> SnapshotStore:
        return snapshot_store_for(app_settings(app))

    store: SnapshotStore = _lazy(app, "snapshot_store", make)
    return store


def get_session_factory(request: Request) -> sessionmaker[Session]:
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


def get_principal(request: Request) -> Principal:
    """Dependency: the caller, from ``Authorization: Bearer KEY`` (401 when missing/unknown)."""
    cached = request.scope.get("adtarget.principal")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    principal = app_key_resolver(request.app).resolve(request.headers.get("authorization"))
    request.scope["adtarget.principal"] = principal
    return principal


def get_actor(principal: Annotated[Principal, Depends(get_principal)]) -> str:
    """Dependency: the actor string recorded in command history."""
    return principal.actor


def get_snapshot_store(request: Request) -> SnapshotStore:
    """Dependency: the app's snapshot store."""
    return app_snapshot_store(request.app)


def require_roles(*roles: str) -> Callable[..., Principal]:
    """Dependency factory: the principal, or 403 unless its role is one of ``roles``.

    Admin is always allowed. Use as ``Depends(require_roles("advertiser", "reader"))``.
    """
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    allowed = frozenset(roles) | {"admin"}

    def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
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
) -> Callable[..., Principal]:
    """Router-level dependency: ``read`` roles may GET, ``write`` roles may also mutate.

    ``writers_read=False`` makes ``write`` roles write-only (ad servers post delivery events
    with their decisions key but must not read reports).
    """
    readers = frozenset(read) | (frozenset(write) if writers_read else frozenset()) | {"admin"}
    writers = frozenset(write) | {"admin"}

    def dependency(
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
if TYPE_CHECKING:
    SnapshotStoreDep = Annotated[SnapshotStore, Depends(get_snapshot_store)]
else:  # the audience module is imported lazily, on first use
    SnapshotStoreDep = Annotated[Any, Depends(get_snapshot_store)]

__all__ = ["OPEN_PRINCIPAL", "ROLES", "Principal"]  # named here too, beside the deps that use them
