"""The CLI's composition root: what a command uses, built in one place per invocation.

Why (the same reason as ``api/container.py``): the catalog sessions, the command writer with
its spend reader, the snapshot store and the event store are built from the settings the same
way for every command; when each command built its own, they drifted (one passed the spend
reader to undo, another forgot). The ``adtarget`` callback (``cli.main``) makes the container
once the settings validate; commands read it with ``cli_container()`` and build nothing.

Parts are made on first use and kept for the invocation: ``adtarget size`` must not open the
event store, and ``adtarget undo`` must not map a snapshot.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.store import SnapshotStore
from adtarget.audience.stores import snapshot_store_for
from adtarget.catalog.db import open_catalog
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.decision.engine import DecisionEngine
from adtarget.delivery.service import DeliverySpend, open_event_store, spend_totals_reader
from adtarget.delivery.store import EventStore
from adtarget.settings import Settings, get_settings

__all__ = ["CliContainer", "cli_actor", "cli_container", "start"]


def cli_actor(settings: Settings) -> str:
    """``settings.actor`` or ``cli:<os user>``: whose undo history CLI changes go to."""
    if settings.actor:
        return settings.actor
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry / no env (containers)
        user = "unknown"
    return f"cli:{user}"


@dataclass
class CliContainer:
    """One CLI invocation's long-lived parts, each built on first use."""

    settings: Settings
    _writers: dict[str, CatalogWriter] = field(default_factory=dict, repr=False)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        """Catalog sessions (the catalog is migrated on first open)."""
        return open_catalog(self.settings)

    @cached_property
    def snapshot_store(self) -> SnapshotStore:
        """The audience snapshot store every publishing path uses."""
        return snapshot_store_for(self.settings)

    def event_store(self, *, maintain: bool = True) -> EventStore:
        """The delivery event store (``maintain=False``: no background compaction)."""
        return open_event_store(self.settings, maintain=maintain)

    def decision_engine(self) -> DecisionEngine:
        """A decision engine wired as ``serve`` wires it (``DecisionEngine.from_settings`` on
        this invocation's catalog, snapshots and delivery spend), for ``adtarget forecast``;
        the caller closes it."""
        return DecisionEngine.from_settings(
            self.settings,
            session_factory=self.session_factory,
            snapshot_store=self.snapshot_store,
            spend=DeliverySpend(self.event_store()),
        )

    @property
    def actor(self) -> str:
        """The CLI user's actor name (``ADTARGET_ACTOR`` or ``cli:<os user>``)."""
        return cli_actor(self.settings)

    def writer(self, actor: str | None = None) -> CatalogWriter:
        """The command-layer writer for ``actor`` (default: the CLI user), with the delivery
        check for undo."""
        name = actor or self.actor
        if name not in self._writers:
            self._writers[name] = CatalogWriter(
                self.session_factory,
                actor=name,
                depth=self.settings.history_depth,
                settings=self.settings,
                spend_totals=spend_totals_reader(self.settings),
            )
        return self._writers[name]


_current: CliContainer | None = None


def start(settings: Settings) -> CliContainer:
    """Make the invocation's container (the ``adtarget`` callback calls this once)."""
    global _current
    _current = CliContainer(settings)
    return _current


def cli_container() -> CliContainer:
    """The invocation's container; one for the current settings when a command runs without
    the callback (a function called directly, as tests do)."""
    settings = get_settings()
    if _current is None or _current.settings is not settings:
        return start(settings)
    return _current
