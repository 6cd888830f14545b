"""The app's decision engine and how the raw route runs it (inline or in a thread).

Why a wrapper around the engine: the route also needs the catalog's format names (refreshed every
few seconds, not per request) and whether the engine runs inline or in a thread under the
request's deadline (``decide_in_thread``). The engine itself is built by ``build_decision_service``
from the container's stores, so every part is shared with the rest of the app.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from adtarget.api import metrics
from adtarget.audience.store import SnapshotStore
from adtarget.catalog.repo import SqlCatalogReader
from adtarget.decision.engine import DecisionEngine
from adtarget.decision.models import Decision, DecisionRequest, DecisionResult
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.decision.redis_async import AsyncUserReads
from adtarget.delivery.beacons import TrackingSigner
from adtarget.delivery.service import DeliverySpend
from adtarget.delivery.store import EventStore
from adtarget.settings import Settings

FORMATS_TTL_S = 5.0


class Decider(Protocol):
    """What the route needs of an engine: ``DecisionEngine`` and test stand-ins alike."""

    def decide(self, request: DecisionRequest, now: Any = None) -> DecisionResult: ...


class DecisionService:
    """The app's engine plus what the route needs around it (known formats, how to run)."""

    def __init__(
        self,
        engine: Decider,
        *,
        inline: bool = True,
        format_names: Callable[[], frozenset[str]] | None = None,
        reads: AsyncUserReads | None = None,
    ) -> None:
        self.engine: Any = engine
        self.inline = inline
        self.reads = reads
        self._format_names = format_names
        self._formats: frozenset[str] | None = None
        self._formats_at = 0.0

    def known_formats(self) -> frozenset[str] | None:
        """Ad format names of the catalog (refreshed every few seconds); None = don't check."""
        if self._format_names is None:
            return None
        now = time.monotonic()
        if self._formats is None or now - self._formats_at > FORMATS_TTL_S:
            self._formats = self._format_names()
            self._formats_at = now
        return self._formats

    def wake(self) -> None:
        """A catalog write just succeeded in this worker: the index checks for changes now."""
        wake = getattr(getattr(self.engine, "index_holder", None), "wake", None)
        if wake is not None:  # a static index (tests, embedding) has nothing to wake
            wake()

    def status(self) -> dict[str, Any]:
        """Readiness of the engine's index."""
        holder = getattr(self.engine, "index_holder", None)
        generation = getattr(holder, "generation", None)
        if generation is not None and generation < 1:
            return {"ok": False, "error": "decision index not built yet"}
        index = holder.current() if holder is not None else None
        return {
            "ok": True,
            "line_items": len(index) if index is not None else None,
            "generation": generation,
        }

    def close(self) -> None:
        """Stop the index refresh thread and release the engine's stores."""
        for owner, name in (
            (getattr(self.engine, "index_holder", None), "stop"),
            (getattr(self.engine, "profiles", None), "close"),
            (getattr(self.engine, "counters", None), "close"),
            (self.reads, "close"),
            (self.engine, "close"),
        ):
            method = getattr(owner, name, None)
            if callable(method):
                method()


def build_decision_service(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session],
    snapshot_store: SnapshotStore,
    event_store: EventStore,
) -> DecisionService:
    """The engine per settings (``DecisionEngine.from_settings``) on the app's own catalog
    sessions, snapshot store and delivery event store: profiles (snapshot | redis), counters
    (memory | sqlite | redis), an index holder polling the catalog for changes. The route runs
    the engine inline, also with Redis stores, the user's profile and counters read on the event
    loop first (``redis_async_reads``: ``decision/redis_async.py``); ``decide_in_thread`` moves
    the engine to a thread under the request deadline.
    """

    catalog = SqlCatalogReader(session_factory)
    engine = DecisionEngine.from_settings(
        settings,
        session_factory=session_factory,
        catalog=catalog,
        snapshot_store=snapshot_store,
        spend=DeliverySpend(event_store),
        on_index_rebuild=metrics.record_index_rebuild,
        index_hooks={
            "on_patch": metrics.record_index_patch,
            "on_disagreement": metrics.record_index_disagreement,
        },
    )
    remote = settings.profile_store == "redis" or settings.counter_store == "redis"
    inline = not (remote and settings.decide_in_thread)
    reads = None
    if (
        inline
        and settings.redis_async_reads
        and isinstance(engine.profiles, RedisProfileStore)
        and importlib.util.find_spec("hiredis") is not None  # the loop's reply parser
    ):
        reads = AsyncUserReads(engine.profiles, timeout=settings.store_timeout_ms / 1000.0)
    return DecisionService(engine, inline=inline, format_names=catalog.format_names, reads=reads)


def add_tracking(
    out: list[dict[str, Any]],
    decisions: list[Decision],
    req: DecisionRequest,
    signer: TrackingSigner,
) -> None:
    """Each answered ad's signed beacon URLs, as ``tracking`` beside it (``API.md``)."""
    now = time.time()
    for body, d in zip(out, decisions, strict=True):
        body["tracking"] = signer.urls(
            decision_id=d.decision_id,
            line_item_id=d.line_item_id,
            creative_id=d.creative_id,
            campaign_id=d.campaign_id,
            advertiser_id=d.advertiser_id,
            user_id=req.user_id,
            bid_cpm=d.bid_cpm,
            context=req.context,
            now=now,
        )
