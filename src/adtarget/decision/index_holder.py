"""Keeps the current ``LineItemIndex`` fresh: rebuilt when the catalog changes, swapped whole.

Why a single reference: a request reads ``holder.current()`` once and uses that index to the
end; a rebuild constructs a complete new index off to the side and publishes it with one
attribute assignment (atomic under the GIL), so no request ever sees half an index and none
waits for a rebuild. Freshness: a cheap marker query every ``poll_seconds`` (background thread
or ``check()``), ``wake()`` to check at once after a change committed in this process (the
API calls it after catalog writes), and ``refresh()`` for an immediate rebuild.

Garbage collection: a rebuild creates only long-lived objects, hundreds of thousands of them at
100,000 line items, and CPython's cyclic collector would scan them all, in collections that
stop every thread (1.2-1.8 s each at 100k, 2.4-3.3 s of a 7.6 s rebuild, measured by
``gc.callbacks``). So the collector is paused while a rebuild runs (reference counting still
frees everything acyclic), and with ``freeze_gc`` everything alive after the swap is moved to
the permanent generation (``gc.freeze``): a full collection after a rebuild then takes ~0 ms
instead of 1.5-1.8 s (2.4M tracked objects at 100k). No collection runs before the freeze
(``gc.collect(1)`` there stalled every thread 0.3 s at 100k); the price is that cyclic garbage
made during the rebuild is never reclaimed: 45 objects over 10 rebuilds at 10,000 line items.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog.repo import CatalogReader, SqlCatalogReader
from adtarget.decision.index import LineItemIndex, compile_item_rule, facts_of
from adtarget.decision.loader import LoadedCatalog, load_catalog
from adtarget.decision.models import LiveLineItem
from adtarget.decision.rebuild_cache import RebuildCache

log = logging.getLogger(__name__)

RebuildHook = Callable[[float, LineItemIndex | None], None]
"""``(seconds, index)`` after a rebuild; ``index`` is ``None`` when the rebuild failed."""


class IndexHolder:
    """Owns the current index and its rebuilds.

    Args:
        load: returns the live line items, or a ``LoadedCatalog`` that also names the line
            items that cannot serve (for ``explain``); called on rebuild.
        marker: returns a cheap fingerprint of the catalog; a change triggers a rebuild.
        poll_seconds: how often ``check``/the background thread looks at the marker.
        rebuild_cache: the cache ``load`` fills, reused to compile the index, so a rebuild after
            a small change re-parses and re-compiles only the rules that changed.
        freeze_gc: ``gc.freeze()`` after each swap (see the module docstring); for a serving
            process, not for a test run that builds many holders.
        on_rebuild: told ``(seconds, index)`` after every rebuild, ``index`` ``None`` when it
            failed (the service's ``/metrics``); its own failure is logged, never raised.
    """

    def __init__(
        self,
        *,
        load: Callable[[], Sequence[LiveLineItem] | LoadedCatalog],
        marker: Callable[[], Hashable],
        poll_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        rebuild_cache: RebuildCache | None = None,
        freeze_gc: bool = False,
        on_rebuild: RebuildHook | None = None,
    ) -> None:
        self._load = load
        self.on_rebuild = on_rebuild
        self.rebuild_cache = rebuild_cache
        self.freeze_gc = freeze_gc
        self._marker = marker
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._rebuild_lock = threading.Lock()
        self._last_marker: Hashable | None = None
        self._last_poll = -float("inf")
        self._generation = 0
        self._index = LineItemIndex([], version="empty")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_session_factory(
        cls,
        session_factory: sessionmaker[Session],
        *,
        poll_seconds: float = 2.0,
        min_segment_size: int = 0,
        freeze_gc: bool = False,
        on_rebuild: RebuildHook | None = None,
    ) -> IndexHolder:
        """A holder reading the catalog through ``session_factory`` (one session per call)."""
        return cls.from_catalog(
            SqlCatalogReader(session_factory),
            poll_seconds=poll_seconds,
            min_segment_size=min_segment_size,
            freeze_gc=freeze_gc,
            on_rebuild=on_rebuild,
        )

    @classmethod
    def from_catalog(
        cls,
        catalog: CatalogReader,
        *,
        poll_seconds: float = 2.0,
        min_segment_size: int = 0,
        freeze_gc: bool = False,
        on_rebuild: RebuildHook | None = None,
    ) -> IndexHolder:
        """A holder reading the catalog through the ``CatalogReader`` it is handed."""

        cache = RebuildCache()

        def load() -> LoadedCatalog:
            with catalog.live() as rows:
                return load_catalog(rows, min_segment_size=min_segment_size, cache=cache)

        return cls(
            load=load,
            marker=catalog.marker,
            poll_seconds=poll_seconds,
            rebuild_cache=cache,
            freeze_gc=freeze_gc,
            on_rebuild=on_rebuild,
        )

    def current(self) -> LineItemIndex:
        """The index to serve with (never blocks on a rebuild)."""
        return self._index

    @property
    def generation(self) -> int:
        """How many indexes have been published (tests and ``/metrics``)."""
        return self._generation

    def refresh(self) -> LineItemIndex:
        """Rebuild now from the catalog and publish; returns the new index."""
        with self._rebuild_lock:
            marker = self._marker()
            return self._rebuild(marker)

    def _rebuild(self, marker: Hashable) -> LineItemIndex:
        collecting = gc.isenabled()
        gc.disable()  # no stop-the-world scans of a half-built index (module docstring)
        started = time.perf_counter()
        built: LineItemIndex | None = None
        try:
            index = built = self._build_and_swap(marker)
        finally:
            if collecting:
                gc.enable()
            self._report(time.perf_counter() - started, built)
        if self.freeze_gc:
            gc.freeze()  # no collection first: at 100k line items gc.collect(1) stalled 0.3 s
        return index

    def _report(self, seconds: float, index: LineItemIndex | None) -> None:
        if self.on_rebuild is None:
            return
        try:
            self.on_rebuild(seconds, index)
        except Exception:  # metrics must never stop the index from being served
            log.exception("index rebuild hook failed")

    def _build_and_swap(self, marker: Hashable) -> LineItemIndex:
        loaded = self._load()
        generation = self._generation + 1
        cache = self.rebuild_cache
        items, not_live = (
            (loaded.items, loaded.not_live) if isinstance(loaded, LoadedCatalog) else (loaded, [])
        )
        index = LineItemIndex(
            items,
            version=f"g{generation}",
            not_live=not_live,
            compiler=cache.compiled if cache is not None else compile_item_rule,
            facts=cache.facts if cache is not None else facts_of,
        )
        self._index = index  # the atomic swap
        self._generation = generation
        self._last_marker = marker
        self._last_poll = self._clock()
        return index

    def check(self, *, now: bool = False) -> bool:
        """If ``poll_seconds`` passed (or ``now``), compare the marker and rebuild on change.

        Returns True if it rebuilt.
        """
        if not now and self._clock() - self._last_poll < self.poll_seconds:
            return False
        with self._rebuild_lock:
            self._last_poll = self._clock()
            marker = self._marker()
            if marker == self._last_marker and self._generation > 0:
                return False
            self._rebuild(marker)
            return True

    def start(self) -> None:
        """Build once, then poll in a daemon thread until ``stop()``."""
        self.refresh()
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="index-holder", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A catalog change was just committed in this process: check now, not at the next poll.

        Cheap and coalescing (an ``Event``): the poll thread runs one ``check`` for any number of
        wakes; other processes still see the change at their next poll.
        """
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check(now=woken)
            except Exception:  # keep serving the last good index; try again next poll
                log.exception("decision index refresh failed; serving the previous index")

    def stop(self) -> None:
        """Stop the background thread (the current index stays usable)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
