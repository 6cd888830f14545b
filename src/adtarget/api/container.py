"""The composition root: everything a worker builds once, in one typed container.

Why one place: the catalog sessions, the key cache, the snapshot store, the event store and the
decision engine (with its index holder) share each other, live as long as the worker, and are
stopped together. The app's lifespan builds them with ``build_container`` and puts the result on
``app.state.container``; routes receive it through ``api.deps`` (``ContainerDep`` and the named
deps beside it) and never build anything themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from adtarget.api.audience_context import AudienceContextCache
from adtarget.api.auth import KeyResolver
from adtarget.api.decision_service import DecisionService, build_decision_service
from adtarget.audience.store import SnapshotStore
from adtarget.audience.stores import snapshot_store_for
from adtarget.catalog.db import open_catalog
from adtarget.commands.delivery_check import SpendTotals
from adtarget.decision.request_log import RequestLog, open_request_log
from adtarget.delivery.beacon_intake import BeaconIntake
from adtarget.delivery.beacons import TrackingSigner, load_keys
from adtarget.delivery.models import LineItemLookup
from adtarget.delivery.service import catalog_lookup, open_event_store, spend_totals_reader
from adtarget.delivery.store import EventStore
from adtarget.errors import StoreUnavailable
from adtarget.settings import Settings


@dataclass(slots=True)
class Container:
    """One worker's long-lived parts; ``replace_decisions`` swaps the engine (tests, drills)."""

    settings: Settings
    session_factory: sessionmaker[Session]
    key_resolver: KeyResolver
    snapshot_store: SnapshotStore
    event_store: EventStore
    decisions: DecisionService
    spend_totals: SpendTotals
    audience_context: AudienceContextCache
    event_lookup: LineItemLookup | None = field(default=None)
    request_log: RequestLog | None = field(default=None)
    """The sampled request log the decision route feeds (``None``: not recorded)."""
    tracking: TrackingSigner | None = field(default=None)
    """Signs the tracking URLs of every decision and verifies beacons (``delivery/beacons``)."""
    beacons: BeaconIntake | None = field(default=None)
    """Beacons into the event log, through a write-ahead file (``delivery/beacon_intake``)."""

    def replace_decisions(self, service: DecisionService) -> None:
        """Serve decisions from ``service`` from now on; the previous engine is stopped."""
        old, self.decisions = self.decisions, service
        old.close()

    def close(self) -> None:
        """Stop the engine's threads and release its stores (the lifespan's shutdown)."""
        self.decisions.close()
        if self.request_log is not None:
            self.request_log.close()
        self.audience_context.close()
        if self.beacons is not None:
            self.beacons.close()  # its last answered beacons into the event log


def build_container(settings: Settings) -> Container:
    """Open the catalog (migrating it once), the stores and the decision engine for ``settings``.

    Raises whatever the catalog raises when it cannot be opened; the lifespan reports it.
    """
    session_factory = open_catalog(settings)
    snapshot_store = snapshot_store_for(settings)
    event_store = open_event_store(settings)
    request_log = open_request_log(settings)
    request_log.start()
    return Container(
        settings=settings,
        session_factory=session_factory,
        key_resolver=KeyResolver(
            session_factory=lambda: session_factory,
            admin_key=settings.admin_key,
            allow_open=settings.allow_open,
        ),
        snapshot_store=snapshot_store,
        event_store=event_store,
        decisions=build_decision_service(
            settings,
            session_factory=session_factory,
            snapshot_store=snapshot_store,
            event_store=event_store,
        ),
        spend_totals=spend_totals_reader(settings),
        event_lookup=catalog_lookup(session_factory),
        request_log=request_log,
        audience_context=AudienceContextCache(session_factory),
        tracking=tracking_signer(settings),
        beacons=BeaconIntake(
            event_store,
            settings.data_dir / "beacon-wal",
            max_backlog_bytes=settings.beacon_backlog_mb * 1024 * 1024,
        ),
    )


def tracking_signer(settings: Settings) -> TrackingSigner:
    """The signer for ``settings``' tracking keys (generated in the data dir when unset)."""
    return TrackingSigner(
        load_keys(settings.tracking_keys, settings.data_dir),
        ttl_seconds=settings.tracking_ttl_seconds,
        base_url=settings.tracking_base_url,
    )


def container_of(app: FastAPI) -> Container:
    """The container the lifespan built, or 503 naming why the worker could not build it."""
    container: Container | None = getattr(app.state, "container", None)
    if container is None:
        reason = getattr(app.state, "container_error", None) or "the app has not started"
        raise StoreUnavailable(f"this worker is not ready: {reason}", field=None)
    return container
