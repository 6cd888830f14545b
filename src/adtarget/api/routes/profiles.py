"""``POST /v1/profiles/updates``: real-time profile updates, durable before the answer.

Why a hand-parsed body: a batch holds up to tens of thousands of small objects, and per-update
validation (with a reason per rejected update, not one 422 for the batch) is the service's job;
a pydantic model of the whole batch would cost more than logging it.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from adtarget.api.deps import ContainerDep, PrincipalDep, SettingsDep, SnapshotStoreDep
from adtarget.audience.gcpause import gc_paused
from adtarget.audience.stores import live_follower, profile_writer
from adtarget.errors import InvalidValue
from adtarget.ingest.updates import accept_updates
from adtarget.settings import Settings

router = APIRouter(tags=["audiences"])


def _writer(request: Request, settings: Settings) -> Any:
    """The app's Redis profile writer (made once, kept on ``app.state``), or ``None``."""
    state = request.app.state
    if not hasattr(state, "profile_writer"):
        state.profile_writer = profile_writer(settings)
    return state.profile_writer


def _registry(store: Any, catalog: Any) -> dict[str, Any]:
    """The snapshot's registry overlaid by the catalog's, the catalog's from the worker's
    cache (re-checked, not reloaded, per call: loading it was 6% of taking a batch)."""
    snap = store.current()  # also opens the live audience this node serves
    merged: dict[str, Any] = dict(snap.registry) if snap is not None else {}
    merged.update(catalog["registry"])
    return merged


def _accept(
    raw: bytes, settings: Settings, store: Any, catalog: tuple[Any, Any], writer: Any
) -> dict[str, Any]:
    """Parse, validate, log and apply one batch, off the event loop: a 5,000-update body is
    milliseconds of parsing that would hold up every other request on the loop, and the
    collector stays paused while the batch's many small objects come and go."""
    with gc_paused():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidValue("body must be JSON", field="body") from None
        if not isinstance(body, dict) or not isinstance(body.get("updates"), list):
            raise InvalidValue('body must be {"updates": [...]}', field="updates")
        registry = _registry(store, catalog[0].context(catalog[1]))
        result = accept_updates(
            body["updates"],
            registry=registry,
            follower=live_follower(settings),
            profiles=writer,
        )
        return result.to_dict()


@router.post("/v1/profiles/updates")
async def post_updates(
    request: Request,
    settings: SettingsDep,
    store: SnapshotStoreDep,
    container: ContainerDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Set, unset or delete users' features: ``{"accepted", "duplicates", "rejected"}``.

    Each update is validated on its own; a rejected one names its index and reason and the
    others still apply. An ``update_id`` seen before is a duplicate and applies once.
    """
    raw = await request.body()
    writer = _writer(request, settings)
    catalog = (container.audience_context, principal)
    return await run_in_threadpool(_accept, raw, settings, store, catalog, writer)
