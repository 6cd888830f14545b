"""Every public route of adtarget as a ``Call`` (shared by the sync and async clients).

The list mirrors ``/openapi.json``; ``tests/client/test_client.py`` checks that every route the
server publishes has a call here, so a new route cannot be forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from adtarget.catalog.kinds import KINDS, Kind
from adtarget.client._base import Call
from adtarget.client.models import (
    BatchResult,
    CommandStep,
    DecisionResult,
    HistoryItem,
    Report,
    SizeResult,
    UploadJob,
)

#: Every (method, path template) a call below sends; compared with the server's OpenAPI.
ROUTES: set[tuple[str, str]] = set()


def _route(method: str, template: str) -> None:
    ROUTES.add((method, template))


def body(data: BaseModel | Mapping[str, Any] | None, **fields: Any) -> dict[str, Any]:
    """A request body from a model (only the fields set), a mapping, and/or keywords."""
    out: dict[str, Any] = {}
    if isinstance(data, BaseModel):
        out.update(data.model_dump(mode="json", exclude_unset=True))
    elif data is not None:
        out.update(data)
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


# --- catalog ------------------------------------------------------------------------------------


def create(kind: Kind, data: BaseModel | Mapping[str, Any] | None, **fields: Any) -> Call:
    """``POST /v1/{kind}``: a command (undoable); answers the object."""
    return Call("POST", f"/v1/{kind.path}", json=body(data, **fields), answer=kind.read)


def get(kind: Kind, obj_id: int) -> Call:
    """``GET /v1/{kind}/{id}``."""
    return Call("GET", f"/v1/{kind.path}/{obj_id}", answer=kind.read, idempotent=True)


def update(
    kind: Kind,
    obj_id: int,
    changes: BaseModel | Mapping[str, Any] | None,
    version: int | None,
    **fields: Any,
) -> Call:
    """``PATCH /v1/{kind}/{id}``; ``version`` makes it refuse (409) if the object moved on."""
    payload = body(changes, **fields)
    if version is not None:
        payload["version"] = version
    return Call("PATCH", f"/v1/{kind.path}/{obj_id}", json=payload, answer=kind.read)


def list_page(kind: Kind, limit: int, after: int | None, filters: Mapping[str, Any]) -> Call:
    """``GET /v1/{kind}?limit=&after=&...``: one page, ``{plural: [...], next_after}``."""
    params = {k: v for k, v in filters.items() if v is not None}
    params["limit"] = limit
    if after is not None:
        params["after"] = after
    return Call("GET", f"/v1/{kind.path}", params=params, idempotent=True)


for _kind in KINDS.values():
    if _kind.update is None:
        continue
    _route("POST", f"/v1/{_kind.path}")
    _route("GET", f"/v1/{_kind.path}")
    _route("GET", f"/v1/{_kind.path}/{{obj_id}}")
    _route("PATCH", f"/v1/{_kind.path}/{{obj_id}}")


def attach_creative(line_item_id: int, creative_id: int) -> Call:
    """``POST /v1/line-items/{id}/creatives``."""
    return Call(
        "POST", f"/v1/line-items/{line_item_id}/creatives", json={"creative_id": creative_id}
    )


def line_item_creatives(line_item_id: int) -> Call:
    """``GET /v1/line-items/{id}/creatives``."""
    return Call("GET", f"/v1/line-items/{line_item_id}/creatives", idempotent=True)


def detach_creative(line_item_id: int, creative_id: int) -> Call:
    """``DELETE /v1/line-items/{id}/creatives/{creative_id}``."""
    return Call("DELETE", f"/v1/line-items/{line_item_id}/creatives/{creative_id}")


_route("POST", "/v1/line-items/{line_item_id}/creatives")
_route("GET", "/v1/line-items/{line_item_id}/creatives")
_route("DELETE", "/v1/line-items/{line_item_id}/creatives/{creative_id}")


def ad_formats() -> Call:
    """``GET /v1/ad-formats``."""
    return Call("GET", "/v1/ad-formats", idempotent=True)


def ad_format(name: str) -> Call:
    """``GET /v1/ad-formats/{name}``."""
    return Call("GET", f"/v1/ad-formats/{name}", idempotent=True)


def add_ad_format(data: Mapping[str, Any]) -> Call:
    """``POST /v1/ad-formats`` (admin keys)."""
    return Call("POST", "/v1/ad-formats", json=dict(data))


_route("GET", "/v1/ad-formats")
_route("GET", "/v1/ad-formats/{name}")
_route("POST", "/v1/ad-formats")

# --- commands -----------------------------------------------------------------------------------


def undo() -> Call:
    """``POST /v1/commands/undo`` (409 ``nothing_to_undo`` when there is nothing)."""
    return Call("POST", "/v1/commands/undo", answer=CommandStep)


def redo() -> Call:
    """``POST /v1/commands/redo``."""
    return Call("POST", "/v1/commands/redo", answer=CommandStep)


def history() -> Call:
    """``GET /v1/commands``: the caller's commands, newest first."""
    return Call("GET", "/v1/commands", answer=list[HistoryItem], unwrap="commands", idempotent=True)


_route("POST", "/v1/commands/undo")
_route("POST", "/v1/commands/redo")
_route("GET", "/v1/commands")

# --- audiences, uploads, profiles -----------------------------------------------------------------


def size(rule: str) -> Call:
    """``POST /v1/audiences/size``."""
    return Call(
        "POST", "/v1/audiences/size", json={"rule": rule}, answer=SizeResult, idempotent=True
    )


def overlap(rules: Sequence[str]) -> Call:
    """``POST /v1/audiences/overlap``."""
    return Call("POST", "/v1/audiences/overlap", json={"rules": list(rules)}, idempotent=True)


def export_audience(rule: str, **options: Any) -> Call:
    """``POST /v1/audiences/export``: the user ids matching ``rule``."""
    return Call("POST", "/v1/audiences/export", json={"rule": rule, **options}, idempotent=True)


def vocabulary() -> Call:
    """``GET /v1/audiences/vocabulary``: dimensions, values and segments."""
    return Call("GET", "/v1/audiences/vocabulary", idempotent=True)


def snapshots() -> Call:
    """``GET /v1/snapshots``."""
    return Call("GET", "/v1/snapshots", idempotent=True)


def rollback_snapshot(snapshot: str) -> Call:
    """``POST /v1/snapshots/rollback`` (admin keys)."""
    return Call("POST", "/v1/snapshots/rollback", json={"snapshot": snapshot})


def upload_path(path: str, mode: str, segment: str | None) -> Call:
    """``POST /v1/uploads`` with a path the server reads (local or ``s3://``)."""
    payload: dict[str, Any] = {"path": path, "mode": mode}
    if segment is not None:
        payload["segment"] = segment
    return Call("POST", "/v1/uploads", json=payload, answer=UploadJob)


def upload_file(name: str, content: bytes, mode: str, segment: str | None) -> Call:
    """``POST /v1/uploads`` with the file in a multipart body."""
    data: dict[str, Any] = {"mode": mode}
    if segment is not None:
        data["segment"] = segment
    return Call("POST", "/v1/uploads", files={"file": (name, content)}, data=data, answer=UploadJob)


def upload(job_id: str) -> Call:
    """``GET /v1/uploads/{id}``."""
    return Call("GET", f"/v1/uploads/{job_id}", answer=UploadJob, idempotent=True)


def uploads() -> Call:
    """``GET /v1/uploads``: jobs, newest first."""
    return Call("GET", "/v1/uploads", idempotent=True)


def upload_rejected(job_id: str) -> Call:
    """``GET /v1/uploads/{id}/rejected``: the rows refused, with reasons."""
    return Call("GET", f"/v1/uploads/{job_id}/rejected", idempotent=True)


def profile_updates(updates: Sequence[Mapping[str, Any]]) -> Call:
    """``POST /v1/profiles/updates``: deduplicated by ``update_id``, so safe to retry."""
    return Call(
        "POST",
        "/v1/profiles/updates",
        json={"updates": list(updates)},
        answer=BatchResult,
        idempotent=True,
    )


for _m, _p in (
    ("POST", "/v1/audiences/size"),
    ("POST", "/v1/audiences/overlap"),
    ("POST", "/v1/audiences/export"),
    ("GET", "/v1/audiences/vocabulary"),
    ("GET", "/v1/snapshots"),
    ("POST", "/v1/snapshots/rollback"),
    ("POST", "/v1/uploads"),
    ("GET", "/v1/uploads"),
    ("GET", "/v1/uploads/{job_id}"),
    ("GET", "/v1/uploads/{job_id}/rejected"),
    ("POST", "/v1/profiles/updates"),
):
    _route(_m, _p)

# --- decisions, delivery, forecast --------------------------------------------------------------


def decide(
    user_id: str,
    context: Mapping[str, Any] | None,
    limit: int,
    formats: Sequence[str] | None,
    **extra: Any,
) -> Call:
    """``POST /v1/decisions`` (reads only: retried like a GET)."""
    payload: dict[str, Any] = {"user_id": user_id, "context": dict(context or {}), "limit": limit}
    if formats is not None:
        payload["formats"] = list(formats)
    payload.update(extra)
    return Call("POST", "/v1/decisions", json=payload, answer=DecisionResult, idempotent=True)


def vast(
    user_id: str,
    slots: int,
    max_duration: float,
    context: Mapping[str, Any] | None,
    min_duration: float | None,
    formats: Sequence[str] | None,
) -> Call:
    """``GET /v1/vast``: the ad break as a VAST 4 document (XML text)."""
    params: dict[str, Any] = {**dict(context or {}), "user_id": user_id, "slots": slots}
    params["max_duration"] = max_duration
    if min_duration is not None:
        params["min_duration"] = min_duration
    if formats is not None:
        params["formats"] = ",".join(formats)
    return Call("GET", "/v1/vast", params=params, answer=str, idempotent=True)


def post_events(events: Sequence[Mapping[str, Any]]) -> Call:
    """``POST /v1/events``: deduplicated by ``event_id``, so safe to retry."""
    return Call("POST", "/v1/events", json=list(events), answer=BatchResult, idempotent=True)


def _day(value: date | datetime | str) -> str:
    return value.isoformat() if isinstance(value, date | datetime) else value


def report(
    start: date | datetime | str | None,
    end: date | datetime | str | None,
    group_by: str | Sequence[str],
    metrics: str | Sequence[str],
    advertiser_id: int | None,
    fmt: str = "json",
) -> Call:
    """``GET /v1/reports``; without dates, the last 7 days up to today (UTC)."""
    today = datetime.now().astimezone().date()
    params: dict[str, Any] = {
        "from": _day(start if start is not None else today - timedelta(days=6)),
        "to": _day(end if end is not None else today),
        "group_by": group_by if isinstance(group_by, str) else ",".join(group_by),
        "metrics": metrics if isinstance(metrics, str) else ",".join(metrics),
        "format": fmt,
    }
    if advertiser_id is not None:
        params["advertiser_id"] = advertiser_id
    answer = str if fmt == "csv" else Report
    return Call("GET", "/v1/reports", params=params, answer=answer, idempotent=True)


def forecast(data: Mapping[str, Any]) -> Call:
    """``POST /v1/forecast`` (reads only; with ``"async": true`` it answers a job)."""
    return Call("POST", "/v1/forecast", json=dict(data), idempotent=True)


def forecast_job(job_id: str) -> Call:
    """``GET /v1/forecast/jobs/{id}``: an async forecast's status, progress and answer."""
    return Call("GET", f"/v1/forecast/jobs/{job_id}", idempotent=True)


for _m, _p in (
    ("POST", "/v1/decisions"),
    ("GET", "/v1/vast"),
    ("POST", "/v1/events"),
    ("GET", "/v1/reports"),
    ("POST", "/v1/forecast"),
    ("GET", "/v1/forecast/jobs/{job_id}"),
):
    _route(_m, _p)

# --- keys, me, health ----------------------------------------------------------------------------


def create_key(role: str, advertiser_id: int | None, name: str | None) -> Call:
    """``POST /v1/keys`` (admin keys): the key is in this answer only."""
    payload: dict[str, Any] = {"role": role}
    if advertiser_id is not None:
        payload["advertiser_id"] = advertiser_id
    if name is not None:
        payload["name"] = name
    return Call("POST", "/v1/keys", json=payload)


def keys() -> Call:
    """``GET /v1/keys`` (never the keys themselves)."""
    return Call("GET", "/v1/keys", idempotent=True)


def revoke_key(key_id: int) -> Call:
    """``DELETE /v1/keys/{id}``."""
    return Call("DELETE", f"/v1/keys/{key_id}", idempotent=True)


def me() -> Call:
    """``GET /v1/me``: the caller's role, advertiser scope and actor name."""
    return Call("GET", "/v1/me", idempotent=True)


def healthz() -> Call:
    """``GET /healthz``."""
    return Call("GET", "/healthz", idempotent=True)


def readyz() -> Call:
    """``GET /readyz``."""
    return Call("GET", "/readyz", idempotent=True)


def metrics() -> Call:
    """``GET /metrics``: Prometheus text."""
    return Call("GET", "/metrics", answer=str, idempotent=True)


for _m, _p in (
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("DELETE", "/v1/keys/{key_id}"),
    ("GET", "/v1/me"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
):
    _route(_m, _p)
