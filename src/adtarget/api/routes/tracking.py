"""``GET /v1/track/{event}/{token}``: the beacons players fire, as a raw ASGI route.

Why raw ASGI and no API key: players fire these from anywhere with no credentials — the signed
token is the credential (``delivery/beacons.py``) — and at the rate ads play, so the route skips
FastAPI's dependency and validation machinery like ``POST /v1/decisions`` does. A verified beacon
is recorded once per (decision, event) through the group-commit intake and answered ``204``
when stored; a forged, tampered, wrong-key or expired one is answered ``403``, recorded nowhere,
and counted in ``/metrics`` by reason.
"""

from __future__ import annotations

import time

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from adtarget.api import metrics
from adtarget.api.container import container_of
from adtarget.api.errors import send_error
from adtarget.api.middleware import METRICS
from adtarget.delivery.beacons import PATH_PREFIX, BeaconRefused
from adtarget.errors import AdtargetError, StoreUnavailable

PATH = PATH_PREFIX + "/{event}/{token}"
_PREFIX = PATH_PREFIX + "/"
NO_STORE = [(b"cache-control", b"no-store")]


def beacon_params(scope: Scope) -> dict[str, str] | None:
    """``{event, token}`` when ``scope`` is a ``GET`` of a tracking URL, else ``None``.

    Why: the app's dispatcher sends beacons straight here (``AdtargetAPI._dispatch``), past
    FastAPI's middleware and route matching, which cost more than the beacon itself (profiled:
    a third of a worker's time at 4,000 beacons/s).
    """
    if scope["type"] != "http":
        return None
    path: str = scope["path"]
    if scope["method"] != "GET" or not path.startswith(_PREFIX) or scope.get("root_path"):
        return None
    event, sep, token = path[len(_PREFIX) :].partition("/")
    if not sep or not event or not token or "/" in token:
        return None  # not a tracking URL: FastAPI answers it (404)
    return {"event": event, "token": token}


async def track_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """Verify one beacon and record its event (see the module docstring)."""
    scope["route"] = ROUTE
    params = scope.get("path_params") or beacon_params(scope) or {}
    try:
        container = container_of(scope["app"])
        if container.tracking is None or container.beacons is None:
            raise StoreUnavailable("tracking is not configured on this worker")
        now = time.time()
        try:
            beacon = container.tracking.verify(
                params.get("event", ""), params.get("token", ""), now=now
            )
        except BeaconRefused as refused:
            METRICS.inc(metrics.BEACONS_REFUSED.labels(refused.reason))
            raise
        try:
            await container.beacons.record(beacon.event_row(now))
        except StoreUnavailable:
            METRICS.inc(metrics.BEACONS_DEFERRED)
            raise
        METRICS.inc(metrics.BEACONS.labels(beacon.event))
    except AdtargetError as err:
        await send_error(send, err)
        return
    await send(
        {"type": "http.response.start", "status": 204, "headers": [(b"cache-control", b"no-store")]}
    )
    await send({"type": "http.response.body", "body": b""})


class _TrackApp:
    """``track_asgi`` as an object, so Starlette's ``Route`` treats it as an ASGI app."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await track_asgi(scope, receive, send)


ROUTE = Route(PATH, _TrackApp(), methods=["GET"])
