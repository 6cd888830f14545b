"""What a rule is validated against on an audience call, kept until the catalog changes.

Why: every sizing call needs the catalog's dimension registry, its segments (rule segments
parsed) and the segments the caller may not see. Loading them took three ORM queries and a parse
of every rule segment per call — more than sizing itself. Here they are loaded once and reused
until the catalog changes, and "changed" is checked on every call, exactly, whoever committed
(another worker, the CLI, a test's own session):

- SQLite file (the embedded default): ``PRAGMA data_version`` on a connection of our own that
  never writes. SQLite changes it whenever another connection commits, so the check is a few
  microseconds and misses nothing; any catalog commit (not only dimensions and segments)
  reloads, which is cheap next to the write itself.
- any other database (PostgreSQL): one small query, a fingerprint of the two tables (row count,
  newest ``updated_at``, sum of ``version``, which the ORM bumps on every UPDATE). A raw SQL
  UPDATE that bumps neither is not seen; every writer of ours goes through the ORM.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adtarget.api.auth import Principal
from adtarget.catalog.checks import dimension_registry
from adtarget.catalog.dimensions import rule_catalog_fingerprint
from adtarget.catalog.segments import all_segment_scopes
from adtarget.rules.ast import Rule
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec
from adtarget.rules.validate import hidden_reach


@dataclass(frozen=True, slots=True)
class SegmentRow:
    """One catalog segment as sizing sees it."""

    name: str
    advertiser_id: int | None
    archived: bool
    rule: Rule | None  # parsed rule of a rule segment; ``None`` for a list segment


@dataclass(slots=True)
class CatalogView:
    """Registry and segments as of one fingerprint, with the per-caller contexts derived."""

    marker: tuple[Any, ...]
    registry: dict[str, DimensionSpec]
    segments: list[SegmentRow]
    by_scope: dict[int | None, dict[str, Any]] = field(default_factory=dict)

    def context(self, principal: Principal) -> dict[str, Any]:
        """``registry``, ``segments``, ``hidden`` and ``reach`` (the visible rule segments whose
        stored rule reaches a hidden one) for ``principal`` (shared: do not mutate)."""
        scope = principal.advertiser_id if principal.role == "advertiser" else None
        got = self.by_scope.get(scope)
        if got is None:
            hidden = (
                frozenset(
                    s.name
                    for s in self.segments
                    if s.advertiser_id is not None and s.advertiser_id != scope
                )
                if principal.role == "advertiser"
                else frozenset()
            )
            definitions = {s.name: s.rule for s in self.segments if s.name not in hidden}
            got = {
                "registry": self.registry,
                "segments": {
                    s.name: s.rule for s in self.segments if not s.archived and s.name not in hidden
                },
                "hidden": hidden,
                "reach": hidden_reach(definitions, hidden),
            }
            self.by_scope[scope] = got
        return got


def load_view(session: Session, marker: tuple[Any, ...]) -> CatalogView:
    """Read the registry and every segment (archived ones too: they can still be hidden)."""
    rows = [
        SegmentRow(
            name=seg.name,
            advertiser_id=seg.advertiser_id,
            archived=seg.archived,
            rule=parse(seg.rule) if seg.kind == "rule" and seg.rule else None,
        )
        for seg in all_segment_scopes(session)
    ]
    return CatalogView(marker, dimension_registry(session=session), rows)


def sqlite_probe(engine: Engine) -> sqlite3.Connection | None:
    """A read-only connection to a SQLite *file* catalog, for ``PRAGMA data_version``
    (``None`` for other databases and in-memory SQLite, whose one shared connection commits
    itself, so its data version never moves)."""
    url = engine.url
    db = url.database
    if url.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)


class AudienceContextCache:
    """The catalog view of the last call, reused while the catalog is unchanged.

    Args:
        session_factory: the worker's catalog sessions.
    """

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._factory = session_factory
        bind = session_factory.kw.get("bind")
        self._probe = sqlite_probe(bind) if isinstance(bind, Engine) else None
        self._view: CatalogView | None = None
        self._lock = threading.Lock()
        self.loads = 0

    def _probe_marker(self) -> tuple[Any, ...] | None:
        probe = self._probe
        if probe is None:
            return None
        try:
            with self._lock:
                return ("data_version", probe.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None  # the file went away or is locked: fall back to the fingerprint

    def context(self, principal: Principal) -> dict[str, Any]:
        """Keyword arguments ``registry``, ``segments``, ``hidden``, ``reach`` for
        ``audience.service``."""
        marker = self._probe_marker()  # read before the view is loaded: never newer than it
        view = self._view
        if marker is not None and view is not None and view.marker == marker:
            return view.context(principal)
        with self._factory() as session:
            if marker is None:
                marker = rule_catalog_fingerprint(session)
                if view is not None and view.marker == marker:
                    return view.context(principal)
            view = load_view(session, marker)
        with self._lock:
            self._view = view
            self.loads += 1
        return view.context(principal)

    def close(self) -> None:
        """Close the SQLite probe connection (the container's shutdown)."""
        if self._probe is not None:
            self._probe.close()
