"""``adtarget.client.AsyncClient``: the same client for asyncio (``httpx.AsyncClient``).

Example::

    from adtarget.client import Client

    async with AsyncClient("http://127.0.0.1:8000", api_key="...") as api:
        acme = await api.advertisers.create(name="Acme")
        async for campaign in api.campaigns.iter(advertiser_id=acme.id):
            print(campaign.name, campaign.budget_total)
        print((await api.report(group_by="campaign")).rows)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel
from tenacity import AsyncRetrying

from adtarget.catalog import models as m
from adtarget.catalog.kinds import KINDS, Kind
from adtarget.client import _calls as calls
from adtarget.client._base import Call, RetryableStatus, check, decode, error_from, headers_for
from adtarget.client._base import retry_policy as policy
from adtarget.client.models import (
    BatchResult,
    CommandStep,
    DecisionResult,
    HistoryItem,
    Page,
    Report,
    SizeResult,
    UploadJob,
)

C = TypeVar("C", bound=BaseModel)
U = TypeVar("U", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


class AsyncResource(Generic[C, U, R]):
    """One catalog kind: ``create``, ``get``, ``update``, ``list`` (a page), ``iter`` (all)."""

    def __init__(self, client: AsyncClient, kind: Kind) -> None:
        self._client = client
        self.kind = kind

    async def create(self, data: C | Mapping[str, Any] | None = None, /, **fields: Any) -> R:
        """Create one object (an undoable command); answers it with its ``id``."""
        out: R = await self._client.send(calls.create(self.kind, data, **fields))
        return out

    async def get(self, obj_id: int) -> R:
        """Read one object (``NotFound`` if missing or not yours)."""
        out: R = await self._client.send(calls.get(self.kind, obj_id))
        return out

    async def update(
        self,
        obj_id: int,
        changes: U | Mapping[str, Any] | None = None,
        /,
        *,
        version: int | None = None,
        **fields: Any,
    ) -> R:
        """Change fields (``status`` too); ``version`` refuses with ``Conflict`` if it moved."""
        out: R = await self._client.send(
            calls.update(self.kind, obj_id, changes, version, **fields)
        )
        return out

    async def list(self, *, limit: int = 100, after: int | None = None, **filters: Any) -> Page[R]:
        """One page of objects by id; pass ``page.next_after`` as ``after`` for the next."""
        raw = await self._client.send(calls.list_page(self.kind, limit, after, filters))
        items = [self.kind.read.model_validate(x) for x in raw[self.kind.plural]]
        return Page[R](items=items, next_after=raw.get("next_after"))  # type: ignore[arg-type]

    async def iter(self, *, page_size: int = 500, **filters: Any) -> AsyncIterator[R]:
        """Every object matching ``filters``, page after page (the ``after`` cursor)."""
        after: int | None = None
        while True:
            page = await self.list(limit=page_size, after=after, **filters)
            for item in page.items:
                yield item
            if page.next_after is None:
                return
            after = page.next_after


class AsyncClient:
    """Every public route of adtarget, typed with the package's own pydantic models.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        api_key: a key from ``adtarget keys create`` (``None``: an open loopback server).
        timeout: seconds per attempt.
        retries: extra attempts for idempotent calls (and for any call that never connected).
        backoff: first wait between attempts, doubled each time (seconds).
        transport: an ``httpx`` transport (tests, proxies); ``None`` is the network.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers_for(api_key),
            timeout=timeout,
            transport=transport,
        )
        self.advertisers: AsyncResource[
            m.AdvertiserCreate, m.AdvertiserUpdate, m.AdvertiserRead
        ] = AsyncResource(self, KINDS["advertiser"])
        self.campaigns: AsyncResource[m.CampaignCreate, m.CampaignUpdate, m.CampaignRead] = (
            AsyncResource(self, KINDS["campaign"])
        )
        self.line_items: AsyncResource[m.LineItemCreate, m.LineItemUpdate, m.LineItemRead] = (
            AsyncResource(self, KINDS["line_item"])
        )
        self.creatives: AsyncResource[m.CreativeCreate, m.CreativeUpdate, m.CreativeRead] = (
            AsyncResource(self, KINDS["creative"])
        )
        self.segments: AsyncResource[m.SegmentCreate, m.SegmentUpdate, m.SegmentRead] = (
            AsyncResource(self, KINDS["segment"])
        )
        self.dimensions: AsyncResource[m.DimensionCreate, m.DimensionUpdate, m.DimensionRead] = (
            AsyncResource(self, KINDS["dimension"])
        )

    # --- plumbing

    async def send(self, call: Call) -> Any:
        """Send ``call`` with its retry policy; the decoded answer or a typed error."""
        try:
            async for attempt in AsyncRetrying(**policy(call, self.retries, self.backoff)):
                with attempt:
                    response = await self._http.request(
                        call.method,
                        call.path,
                        params=call.params,
                        json=call.json if call.files is None else None,
                        files=call.files,
                        data=call.data,
                        headers=call.headers or None,
                    )
                    check(call, response)
        except RetryableStatus as exc:
            raise error_from(exc.response) from None
        return decode(call, response)

    async def _object(self, call: Call) -> dict[str, Any]:
        """``send`` for the routes that answer a JSON object."""
        out: dict[str, Any] = await self.send(call)
        return out

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- catalog extras and commands

    async def attach_creative(self, line_item_id: int, creative_id: int) -> dict[str, Any]:
        """Let a line item show a creative (undoable)."""
        return await self._object(calls.attach_creative(line_item_id, creative_id))

    async def detach_creative(self, line_item_id: int, creative_id: int) -> dict[str, Any]:
        """Stop a line item showing a creative (undoable)."""
        return await self._object(calls.detach_creative(line_item_id, creative_id))

    async def line_item_creatives(self, line_item_id: int) -> dict[str, Any]:
        """The creatives attached to a line item."""
        return await self._object(calls.line_item_creatives(line_item_id))

    async def ad_formats(self) -> dict[str, Any]:
        """The ad-format registry."""
        return await self._object(calls.ad_formats())

    async def ad_format(self, name: str) -> dict[str, Any]:
        """One ad format."""
        return await self._object(calls.ad_format(name))

    async def add_ad_format(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Register an ad type (admin keys)."""
        return await self._object(calls.add_ad_format(data))

    async def undo(self) -> CommandStep:
        """Undo your newest change (``NothingToUndo`` when there is none)."""
        out: CommandStep = await self.send(calls.undo())
        return out

    async def redo(self) -> CommandStep:
        """Redo your most recently undone change."""
        out: CommandStep = await self.send(calls.redo())
        return out

    async def history(self) -> list[HistoryItem]:
        """Your commands, newest first."""
        out: list[HistoryItem] = await self.send(calls.history())
        return out

    # --- audiences, uploads, profiles

    async def size(self, rule: str) -> SizeResult:
        """Exact audience size of a rule (``count`` is ``None`` below the threshold)."""
        out: SizeResult = await self.send(calls.size(rule))
        return out

    async def overlap(self, rules: Sequence[str]) -> dict[str, Any]:
        """Pairwise overlap of rules."""
        return await self._object(calls.overlap(rules))

    async def export_audience(self, rule: str, **options: Any) -> dict[str, Any]:
        """The user ids matching a rule."""
        return await self._object(calls.export_audience(rule, **options))

    async def vocabulary(self) -> dict[str, Any]:
        """Dimensions, their values and segments (for completion)."""
        return await self._object(calls.vocabulary())

    async def snapshots(self) -> dict[str, Any]:
        """The audience snapshots kept."""
        return await self._object(calls.snapshots())

    async def rollback_snapshot(self, snapshot: str) -> dict[str, Any]:
        """Serve an older snapshot (admin keys)."""
        return await self._object(calls.rollback_snapshot(snapshot))

    async def upload(
        self,
        file: str | Path,
        *,
        mode: str = "replace",
        segment: str | None = None,
        server_path: bool = False,
    ) -> UploadJob:
        """Start an upload: send the local ``file``, or (``server_path``) name a path the
        server reads itself (``s3://bucket/users.parquet`` too)."""
        if server_path:
            out: UploadJob = await self.send(calls.upload_path(str(file), mode, segment))
            return out
        path = Path(file)
        out = await self.send(calls.upload_file(path.name, path.read_bytes(), mode, segment))
        return out

    async def upload_job(self, job_id: str) -> UploadJob:
        """An upload job's status and counts."""
        out: UploadJob = await self.send(calls.upload(job_id))
        return out

    async def wait_for_upload(
        self, job_id: str, *, timeout: float = 600, poll: float = 0.2
    ) -> UploadJob:
        """Poll until the job succeeded or failed (``TimeoutError`` after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.upload_job(job_id)
            if job.finished:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"upload {job_id} still {job.status} after {timeout} s")
            await asyncio.sleep(poll)

    async def uploads(self) -> dict[str, Any]:
        """Upload jobs, newest first."""
        return await self._object(calls.uploads())

    async def upload_rejected(self, job_id: str) -> dict[str, Any]:
        """A job's rejected rows with their reasons."""
        return await self._object(calls.upload_rejected(job_id))

    async def profile_updates(self, updates: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Real-time profile updates (deduplicated by ``update_id``)."""
        out: BatchResult = await self.send(calls.profile_updates(updates))
        return out

    # --- decisions, delivery, forecast

    async def decide(
        self,
        user_id: str,
        context: Mapping[str, Any] | None = None,
        *,
        limit: int = 1,
        formats: Sequence[str] | None = None,
        **extra: Any,
    ) -> DecisionResult:
        """Ranked ads for a user in a context."""
        out: DecisionResult = await self.send(
            calls.decide(user_id, context, limit, formats, **extra)
        )
        return out

    async def vast(
        self,
        user_id: str,
        *,
        slots: int,
        max_duration: float,
        context: Mapping[str, Any] | None = None,
        min_duration: float | None = None,
        formats: Sequence[str] | None = None,
    ) -> str:
        """An ad break as VAST 4 XML (what a player or SSAI reads)."""
        out: str = await self.send(
            calls.vast(user_id, slots, max_duration, context, min_duration, formats)
        )
        return out

    async def post_events(self, events: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Record delivery events (deduplicated by ``event_id``, so retried safely)."""
        out: BatchResult = await self.send(calls.post_events(events))
        return out

    async def report(
        self,
        start: date | datetime | str | None = None,
        end: date | datetime | str | None = None,
        *,
        group_by: str | Sequence[str] = "day",
        metrics: str | Sequence[str] = "impressions,clicks,spend",
        advertiser_id: int | None = None,
    ) -> Report:
        """A delivery report; without dates, the last 7 days through today."""
        out: Report = await self.send(calls.report(start, end, group_by, metrics, advertiser_id))
        return out

    async def report_csv(
        self,
        start: date | datetime | str | None = None,
        end: date | datetime | str | None = None,
        *,
        group_by: str | Sequence[str] = "day",
        metrics: str | Sequence[str] = "impressions,clicks,spend",
        advertiser_id: int | None = None,
    ) -> str:
        """The same report as CSV text."""
        out: str = await self.send(
            calls.report(start, end, group_by, metrics, advertiser_id, "csv")
        )
        return out

    async def forecast(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Forecast a proposed or changed line item."""
        return await self._object(calls.forecast(data))

    async def forecast_job(self, job_id: str) -> dict[str, Any]:
        """An async forecast's job (``forecast({..., "async": True})`` answers its ``id``)."""
        out: dict[str, Any] = await self.send(calls.forecast_job(job_id))
        return out

    # --- keys, me, health

    async def create_key(
        self, role: str, *, advertiser_id: int | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """Make an API key (admin keys); the key itself is only in this answer."""
        return await self._object(calls.create_key(role, advertiser_id, name))

    async def keys(self) -> dict[str, Any]:
        """List keys (never the keys themselves)."""
        return await self._object(calls.keys())

    async def revoke_key(self, key_id: int) -> dict[str, Any]:
        """Revoke a key."""
        return await self._object(calls.revoke_key(key_id))

    async def me(self) -> dict[str, Any]:
        """Who the server thinks you are."""
        return await self._object(calls.me())

    async def healthz(self) -> dict[str, Any]:
        """Liveness."""
        return await self._object(calls.healthz())

    async def readyz(self) -> dict[str, Any]:
        """Readiness."""
        return await self._object(calls.readyz())

    async def metrics(self) -> str:
        """Prometheus metrics text."""
        out: str = await self.send(calls.metrics())
        return out
