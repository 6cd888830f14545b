"""Follows the catalog change log and hands each new batch of changes to the index holder.

Why: a catalog change must reach every decision process in milliseconds, not at the next poll.
On PostgreSQL a dedicated connection ``LISTEN``s on ``catalog.changes.CHANNEL`` (the triggers
notify once per committed transaction) and reads the log when told; on SQLite nothing is
pushed, so the feed asks ``PRAGMA data_version`` — a counter in shared memory that moves when
another connection commits, no table read — every ``sqlite_poll_seconds`` and reads the log
only when it moved. Either way the log is also read every ``poll_seconds`` (the safety net for
a lost notification or a dropped listener connection).

Sequence numbers are handed out when a row is written, not when its transaction commits, so on
PostgreSQL a later number can become visible first. The feed therefore keeps every number above
its ``floor`` that it has not seen yet as a *gap* for ``gap_seconds`` (an open transaction that
may still commit) and re-reads from below it until it is filled or given up (a rollback); the
holder's periodic full rebuild covers the rare transaction older than that.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

from adtarget.catalog.changes import CHANNEL, Change
from adtarget.catalog.repo import ChangeLog

log = logging.getLogger(__name__)

Deliver = Callable[[Sequence[Change]], None]
"""Applies a batch of new changes (``IndexHolder.apply_changes``); raising means "not applied,
offer them again"."""

BATCH = 5000
STOP_SLICE = 0.25
"""Longest wait inside ``LISTEN`` before looking at ``stop()`` / ``wake()`` again."""
GAPS_MAX = 10_000


class ChangeFeed:
    """Reads new rows of the change log and delivers them, in a daemon thread or on demand.

    Args:
        changelog: the catalog's change log (``SqlCatalogReader``).
        deliver: called with each batch of unseen changes, in ``seq`` order.
        poll_seconds: the safety-net read of the log when nothing announced a change.
        sqlite_poll_seconds: how often ``PRAGMA data_version`` is asked on SQLite.
        gap_seconds: how long an unseen sequence number is waited for.
    """

    def __init__(
        self,
        changelog: ChangeLog,
        deliver: Deliver,
        *,
        poll_seconds: float = 2.0,
        sqlite_poll_seconds: float = 0.02,
        gap_seconds: float = 30.0,
    ) -> None:
        self._log = changelog
        self._deliver = deliver
        self.poll_seconds = poll_seconds
        self.sqlite_poll_seconds = sqlite_poll_seconds
        self.gap_seconds = gap_seconds
        self._lock = threading.Lock()
        self.floor = 0
        self._seen: set[int] = set()
        self._gaps: dict[int, float] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        url = changelog.url
        self.backend = url.get_backend_name() if url is not None else "unknown"
        self._url = url
        self.delivered = 0

    # -- reading the log ---------------------------------------------------------------------

    def reset(self, floor: int) -> None:
        """Forget what was seen: everything up to ``floor`` is in the index already."""
        with self._lock:
            self.floor = floor
            self._seen.clear()
            self._gaps.clear()

    def latest(self) -> int:
        """The newest sequence number in the log (a full rebuild starts from it)."""
        return self._log.latest_change()

    def poll_once(self) -> int:
        """Read the log once and deliver what is new; returns how many changes were delivered."""
        with self._lock:
            rows = self._log.changes_after(self.floor, BATCH)
            fresh = [c for c in rows if c.seq not in self._seen]
            if fresh:
                self._deliver(fresh)  # raises: nothing marked seen, offered again next read
                self._seen.update(c.seq for c in fresh)
                self.delivered += len(fresh)
            self._settle(rows)
            return len(fresh)

    def _settle(self, rows: Sequence[Change]) -> None:
        """Move ``floor`` up past every number seen or given up; remember the new gaps."""
        if not rows:
            return
        top = rows[-1].seq
        now = time.monotonic()
        if top - self.floor > GAPS_MAX + len(rows):  # a huge rollback: do not track each gap
            self._gaps = {}
        else:
            seen = self._seen
            for seq in range(self.floor + 1, top):
                if seq not in seen and seq not in self._gaps:
                    self._gaps[seq] = now
        while True:
            nxt = self.floor + 1
            if nxt in self._seen:
                self._seen.discard(nxt)
            elif nxt in self._gaps and now - self._gaps[nxt] > self.gap_seconds:
                del self._gaps[nxt]
            elif nxt <= top and nxt not in self._gaps:
                pass  # a huge rollback's numbers, not tracked
            else:
                break
            self.floor = nxt

    # -- the thread -------------------------------------------------------------------------

    def wake(self) -> None:
        """Read the log now (a write just committed in this process)."""
        self._wake.set()

    def start(self) -> None:
        """Follow the log in a daemon thread until ``stop()``."""
        if self._thread is not None:
            return
        self._stop.clear()
        target = self._run_postgres if self.backend == "postgresql" else self._run_sqlite
        self._thread = threading.Thread(target=target, name="catalog-changes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _safe_poll(self) -> None:
        try:
            self.poll_once()
        except Exception:  # keep serving the last index; the next read offers them again
            log.exception("reading the catalog change log failed")

    def _run_sqlite(self) -> None:
        path = self._url.database if self._url is not None else None
        conn: sqlite3.Connection | None = None
        if path and path != ":memory:" and not path.startswith("file:"):
            conn = sqlite3.connect(path, check_same_thread=False)
        version = None
        last_read = 0.0
        try:
            while not self._stop.is_set():
                woken = self._wake.wait(self.sqlite_poll_seconds)
                self._wake.clear()
                if self._stop.is_set():
                    return
                moved = False
                if conn is not None:
                    now_version = conn.execute("PRAGMA data_version").fetchone()[0]
                    moved, version = now_version != version, now_version
                if woken or moved or time.monotonic() - last_read >= self.poll_seconds:
                    last_read = time.monotonic()
                    self._safe_poll()
        finally:
            if conn is not None:
                conn.close()

    def _run_postgres(self) -> None:
        import psycopg  # the postgres extra; a PostgreSQL catalog cannot run without it

        assert self._url is not None
        url = self._url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f'LISTEN "{CHANNEL}"')
                    self._safe_poll()  # anything committed before LISTEN took effect
                    last_read = time.monotonic()
                    while not self._stop.is_set():
                        told = False  # waits in short slices so that stop() is prompt
                        for _ in conn.notifies(timeout=STOP_SLICE, stop_after=1):
                            told = True
                        if self._stop.is_set():
                            return
                        due = time.monotonic() - last_read >= self.poll_seconds
                        if not (told or due or self._wake.is_set()):
                            continue
                        self._wake.clear()
                        last_read = time.monotonic()
                        # one read per wake-up; a notification that arrives while reading is
                        # kept by psycopg and ends the next wait at once (never drained unread)
                        self._safe_poll()
            except Exception:
                log.exception("catalog LISTEN connection lost; reconnecting")
                self._stop.wait(min(1.0, self.poll_seconds))
