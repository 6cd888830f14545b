"""Keeps the current decision index fresh: patched per catalog change, rebuilt now and then.

Why a single reference: a request reads ``holder.current()`` once and uses that index to the
end; a rebuild constructs a complete new index off to the side and publishes it with one
attribute assignment (atomic under the GIL), so no request ever sees half an index and none
waits for a rebuild. Freshness: a cheap marker query every ``poll_seconds`` (background thread
or ``check()``), ``wake()`` to check at once after a change committed in this process (the
API calls it after catalog writes), and ``refresh()`` for an immediate rebuild.

Patching (``follow`` with ``load_changed``): a ``ChangeFeed`` delivers the catalog's change log
(PostgreSQL ``NOTIFY``, SQLite ``PRAGMA data_version``) and ``apply_changes`` reloads only the
line items the changes reach and publishes a ``PatchedIndex`` over the same base (milliseconds,
not a rebuild). A full rebuild stays for start-up, when a patch would reach more than
``patch_max`` line items or the patched set outgrows ``patch_max``, and every
``check_seconds`` as the agreement check: the rebuild is compared with the patched index, a
disagreement is logged and counted (``disagreements``, ``on_disagreement``) and healed by
publishing the rebuild. A rebuild does not block patches: changes applied while it loads are
recorded and applied again on top of it before it is published.

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
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.gcpause import gc_paused
from adtarget.catalog.changes import Change
from adtarget.catalog.repo import CatalogReader, SqlCatalogReader
from adtarget.decision.change_feed import ChangeFeed
from adtarget.decision.index import LineItemIndex, compile_item_rule, facts_of
from adtarget.decision.loader import LoadedCatalog, load_catalog
from adtarget.decision.models import LiveLineItem
from adtarget.decision.patched_index import PatchedIndex, differences
from adtarget.decision.patching import load_changed
from adtarget.decision.rebuild_cache import RebuildCache

log = logging.getLogger(__name__)

RebuildHook = Callable[[float, PatchedIndex | None], None]
"""``(seconds, index)`` after a rebuild; ``index`` is ``None`` when the rebuild failed."""
PatchHook = Callable[[float, int], None]
"""``(seconds, line items reloaded)`` after each patch (the service's ``/metrics``)."""
DisagreementHook = Callable[[set[int]], None]
"""Ids of the line items a rebuild found patched wrongly (logged, counted, then healed)."""
LoadChanged = Callable[[Sequence[Change], int], "tuple[frozenset[int], LoadedCatalog] | None"]
"""``(changes, at_most)`` -> the line items they reach and their fresh state, or ``None``."""


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
        load_changed: LoadChanged | None = None,
        feed: Callable[[IndexHolder], ChangeFeed] | None = None,
        check_seconds: float = 300.0,
        patch_max: int = 2000,
        on_patch: PatchHook | None = None,
        on_disagreement: DisagreementHook | None = None,
    ) -> None:
        self._load = load
        self._load_changed = load_changed
        self.check_seconds = check_seconds
        self.patch_max = patch_max
        self.on_patch = on_patch
        self.on_disagreement = on_disagreement
        self.disagreements = 0
        self.patches = 0
        self._swap_lock = threading.Lock()
        self._recording: list[Change] | None = None
        self._want_rebuild = threading.Event()
        self._last_check = clock()
        self.feed = feed(self) if feed is not None else None
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
        self._index = PatchedIndex.of(LineItemIndex([], version="empty"))
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_session_factory(
        cls, session_factory: sessionmaker[Session], **kwargs: Any
    ) -> IndexHolder:
        """A holder reading the catalog through ``session_factory`` (one session per call);
        ``kwargs`` as for ``from_catalog``."""
        return cls.from_catalog(SqlCatalogReader(session_factory), **kwargs)

    @classmethod
    def from_catalog(
        cls,
        catalog: CatalogReader,
        *,
        poll_seconds: float = 2.0,
        min_segment_size: int = 0,
        freeze_gc: bool = False,
        on_rebuild: RebuildHook | None = None,
        follow: bool = True,
        check_seconds: float = 300.0,
        patch_max: int = 2000,
        on_patch: PatchHook | None = None,
        on_disagreement: DisagreementHook | None = None,
    ) -> IndexHolder:
        """A holder reading the catalog through the ``CatalogReader`` it is handed.

        ``follow``: when the reader also keeps the change log (``ChangeLog``, as
        ``SqlCatalogReader`` does), the index is patched from it once ``start()``ed; otherwise
        (or with ``follow=False``) it is rebuilt when ``marker`` changes.
        """

        cache = RebuildCache()
        patch_cache = RebuildCache()  # the patch path's own: it runs beside a rebuild
        source = catalog if follow and isinstance(catalog, SqlCatalogReader) else None

        def changed(changes: Sequence[Change], at_most: int) -> Any:
            assert source is not None
            return load_changed(
                source,
                changes,
                at_most=at_most,
                min_segment_size=min_segment_size,
                cache=patch_cache,
            )

        def feed(holder: IndexHolder) -> ChangeFeed:
            assert source is not None
            return ChangeFeed(source, holder.apply_changes, poll_seconds=poll_seconds)

        def load() -> LoadedCatalog:
            if source is not None:  # patches read the segments again from now on
                source.forget_segments()
            with catalog.live() as rows:
                return load_catalog(rows, min_segment_size=min_segment_size, cache=cache)

        return cls(
            load=load,
            marker=catalog.marker,
            poll_seconds=poll_seconds,
            rebuild_cache=cache,
            freeze_gc=freeze_gc,
            on_rebuild=on_rebuild,
            load_changed=changed if source is not None else None,
            feed=feed if source is not None else None,
            check_seconds=check_seconds,
            patch_max=patch_max,
            on_patch=on_patch,
            on_disagreement=on_disagreement,
        )

    def current(self) -> PatchedIndex:
        """The index to serve with (never blocks on a rebuild)."""
        return self._index

    @property
    def generation(self) -> int:
        """How many indexes have been published (tests and ``/metrics``)."""
        return self._generation

    def refresh(self, *, check: bool = False) -> PatchedIndex:
        """Rebuild now from the catalog and publish; returns the new index.

        ``check``: first compare the rebuild with the patched index being served (the
        agreement check; see the module docstring).
        """
        with self._rebuild_lock:
            marker = self._marker()
            return self._rebuild(marker, check=check)

    def _rebuild(self, marker: Hashable, *, check: bool = False) -> PatchedIndex:
        started = time.perf_counter()
        built: PatchedIndex | None = None
        try:
            # no stop-the-world scans of a half-built index (module docstring)
            with gc_paused():
                index = built = self._build_and_swap(marker, check)
        finally:
            self._report(time.perf_counter() - started, built)
        if self.freeze_gc:
            gc.freeze()  # no collection first: at 100k line items gc.collect(1) stalled 0.3 s
        return index

    def _report(self, seconds: float, index: PatchedIndex | None) -> None:
        if self.on_rebuild is None:
            return
        try:
            self.on_rebuild(seconds, index)
        except Exception:  # metrics must never stop the index from being served
            log.exception("index rebuild hook failed")

    def _build_and_swap(self, marker: Hashable, check: bool) -> PatchedIndex:
        feed = self.feed
        floor = feed.latest() if feed is not None and self._generation == 0 else None
        with self._swap_lock:
            self._recording = []  # patches applied from now on are applied again on top
        try:
            loaded = self._load()
            cache = self.rebuild_cache
            items, not_live = (
                (loaded.items, loaded.not_live)
                if isinstance(loaded, LoadedCatalog)
                else (loaded, [])
            )
            base = LineItemIndex(
                items,
                version=f"g{self._generation + 1}",
                not_live=not_live,
                compiler=cache.compiled if cache is not None else compile_item_rule,
                facts=cache.facts if cache is not None else facts_of,
            )
            if check and feed is not None:
                feed.poll_once()  # deliver what committed during the load before comparing
        except BaseException:
            with self._swap_lock:
                self._recording = None
            raise
        with self._swap_lock:
            recorded, self._recording = self._recording, None
            index = PatchedIndex.of(base)
            if recorded:
                index = self._patch(index, recorded, f"g{self._generation + 1}") or index
            # Both indexes are immutable and stand at the same point of the change stream here;
            # the comparison (a pass over every line item) runs after the lock is let go, so
            # patches arriving meanwhile are not held up by it. The rebuild is served either way.
            served = self._index if check and self._generation > 0 else None
            self._index = index  # the atomic swap
            self._generation += 1
            self._last_marker = marker
            self._last_poll = self._last_check = self._clock()
        if served is not None:
            self._compare(served, index)
        if floor is not None and feed is not None:
            feed.reset(floor)
        return index

    def _compare(self, patched: PatchedIndex, rebuilt: PatchedIndex) -> None:
        wrong = differences(patched, rebuilt)
        if not wrong:
            return
        self.disagreements += 1
        log.warning(
            "the patched decision index disagreed with a rebuild on %d line items (%s); "
            "serving the rebuild",
            len(wrong),
            ", ".join(str(i) for i in sorted(wrong)[:20]),
        )
        if self.on_disagreement is not None:
            try:
                self.on_disagreement(wrong)
            except Exception:
                log.exception("index disagreement hook failed")

    # -- patching ----------------------------------------------------------------------------

    def apply_changes(self, changes: Sequence[Change]) -> None:
        """Patch the served index with ``changes`` (the ``ChangeFeed`` calls this); a change
        reaching more than ``patch_max`` line items asks the background thread to rebuild."""
        if not changes:
            return
        started = time.perf_counter()
        with self._swap_lock:
            if self._recording is not None:
                self._recording.extend(changes)
            if self._generation == 0:
                return  # nothing published yet: the first rebuild will include them
            index = self._patch(self._index, changes, f"g{self._generation}p{self.patches + 1}")
            if index is None or index.patch_size > self.patch_max:
                self._want_rebuild.set()
                self._wake.set()
            if index is not None:
                self._index = index  # the atomic swap
                self.patches += 1
                reloaded = len(index.gone)
        if self.on_patch is not None and index is not None:
            try:
                self.on_patch(time.perf_counter() - started, reloaded)
            except Exception:
                log.exception("index patch hook failed")

    def _patch(
        self, index: PatchedIndex, changes: Sequence[Change], version: str
    ) -> PatchedIndex | None:
        if self._load_changed is None:
            return None
        found = self._load_changed(changes, self.patch_max)
        if found is None:
            return None
        ids, loaded = found
        return index.patched(ids, loaded, version) if ids else index

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
        """Build once, then follow the change log (or poll) in daemon threads until ``stop()``."""
        self.refresh()
        if self.feed is not None:
            self.feed.start()
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="index-holder", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A catalog change was just committed in this process: check now, not at the next poll.

        Cheap and coalescing (an ``Event``): the poll thread runs one ``check`` for any number of
        wakes; other processes still see the change at their next poll. Following the change
        log, the feed reads it now instead (every other process is told by the log itself).
        """
        if self.feed is not None:
            self.feed.wake()
        else:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.check_seconds if self.feed is not None else self.poll_seconds
            woken = self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self.feed is None:
                    self.check(now=woken)
                elif self._want_rebuild.is_set() or (
                    self._clock() - self._last_check >= self.check_seconds
                ):
                    self._want_rebuild.clear()
                    self.refresh(check=True)
            except Exception:  # keep serving the last good index; try again next poll
                log.exception("decision index refresh failed; serving the previous index")

    def stop(self) -> None:
        """Stop the background thread (the current index stays usable)."""
        self._stop.set()
        self._wake.set()
        if self.feed is not None:
            self.feed.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
