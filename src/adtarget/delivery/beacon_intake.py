"""Beacons into the event log: answered once in a local write-ahead file, moved in the background.

Why: the event log's append (a dedup lookup, a Parquet part, the rollups, in one transaction)
costs ~8 ms per batch whatever its size, and ~0.5 s when it compacts a day's small files; with
answers waiting for it, intake topped out near 4,000 beacons/s with a p99 of 400 ms. Now a
beacon is answered once its event is in the write-ahead file (``wal.py``: one ``write`` +
``fdatasync`` per group of beacons arriving together), and a background thread moves the file's
rows into the event log every ``flush_interval_s`` — in big batches, so few Parquet parts and
rare compactions, none of it on the answer's path.

Group commit: beacons arriving while a write is in flight queue up and go out as the next write
the moment it is done (at most ``max_wait_s`` of extra waiting when idle), one write in flight per
event loop. Rows are not validated before the answer (23 µs a row in batches of 64, more than
verifying the token): every field comes from a token we signed, and the event log validates them
when they move, in big batches; a refusal there is a bug and is logged with the rows.

Exactly once: the event log drops an ``event_id`` (``decision_id.event``) it has seen, so a
player's retry, two racing copies, and a replay of rows already moved all count once. A worker
killed mid-way leaves its segments behind; the next intake to start (or a live one, every
``ORPHAN_SCAN_S``) replays them. Reports see a beacon once it is moved (``flush`` forces it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

from adtarget.delivery.models import validate_events
from adtarget.delivery.service import IngestResult, ingest_events
from adtarget.delivery.store import EventStore
from adtarget.delivery.wal import BacklogFull, Segment, WriteAheadLog
from adtarget.errors import StoreUnavailable

log = logging.getLogger("adtarget.delivery")
_Waiting = tuple[dict[str, Any], "asyncio.Future[None]"]
#: How often a running intake looks for segments of dead workers (a restarted one replays at once).
ORPHAN_SCAN_S = 10.0
_CHUNK = 50_000  # rows per event-log append when replaying a big segment


class BeaconIntake:
    """Group commit of beacon events into a write-ahead file; one per worker process."""

    def __init__(
        self,
        store: EventStore,
        wal_dir: Path,
        *,
        max_batch: int = 4096,
        max_wait_s: float = 0.0005,
        flush_interval_s: float = 0.25,
        flush_rows: int = 20_000,
        sync: bool = True,
        max_backlog_bytes: int | None = None,
    ) -> None:
        self._store = store
        self._wal = WriteAheadLog(wal_dir, sync=sync, max_bytes=max_backlog_bytes)
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._flush_interval_s = flush_interval_s
        self._flush_rows = flush_rows
        # Per event loop: uvicorn runs one per worker, but a test client may run one per
        # request, and a future must be completed on its own loop.
        self._pending: dict[asyncio.AbstractEventLoop, list[_Waiting]] = {}
        self._timers: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        self._writing: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._busy: set[asyncio.AbstractEventLoop] = set()  # loops with a write in flight
        self._move_lock = threading.Lock()  # one mover of rows into the event log at a time
        self._sealed: list[Segment] = []  # answered rows not yet in the log, oldest first
        self._wake = threading.Event()
        self._stop = threading.Event()
        try:
            self.replay()  # what a killed worker answered, before this one serves
        except Exception:  # the store is down: the segments stay locked here and are retried
            log.exception("replaying beacon write-ahead segments failed; retrying in background")
        self._thread = threading.Thread(target=self._run, name="beacon-mover", daemon=True)
        self._thread.start()

    async def record(self, row: dict[str, Any]) -> None:
        """Queue one event; return once it is in the write-ahead file (or raise its error)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        pending = self._pending.setdefault(loop, [])
        pending.append((row, done))
        if loop in self._busy:
            pass  # a write is in flight: this one goes out the moment it is done
        elif len(pending) >= self._max_batch:
            self._flush(loop)
        elif loop not in self._timers:
            self._timers[loop] = loop.call_later(self._max_wait_s, self._flush, loop)
        await done

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        timer = self._timers.pop(loop, None)
        if timer is not None:
            timer.cancel()
        batch = self._pending.pop(loop, [])
        if batch:
            self._busy.add(loop)
            task = loop.create_task(self._write(loop, batch))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def _write(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting]) -> None:
        try:
            await self._write_batch(loop, batch)
        finally:
            self._busy.discard(loop)
            if self._pending.get(loop):  # what arrived meanwhile: one write, now
                self._flush(loop)

    async def _write_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting]) -> None:
        rows = [row for row, _ in batch]
        try:
            await loop.run_in_executor(None, self._append, rows)
        except Exception as exc:  # every request of the batch learns it failed
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    def _append(self, rows: list[dict[str, Any]]) -> None:
        """Write the rows durably (no validation here: each row is built from a token whose
        every field we signed, and the event log validates them again when they move).

        A full backlog (the event log has been down a while) or a failing disk is a 503: the
        player retries, and its retry counts once."""
        try:
            self._wal.append(rows)
        except BacklogFull as full:
            self._wake.set()
            raise StoreUnavailable(f"beacons are not being stored for now: {full}; retry") from full
        except OSError as err:
            raise StoreUnavailable(f"the beacon write-ahead file failed: {err}; retry") from err
        if self._wal.pending() >= self._flush_rows:
            self._wake.set()

    def flush(self) -> IngestResult:
        """Move every answered row into the event log now (the mover thread, tests, shutdown).

        A segment is released only once its rows are committed; if the store fails, it stays
        queued (and on disk) and the error is raised.
        """
        with self._move_lock:
            self._sealed.extend(self._wal.seal())
            return self._move_sealed()

    def replay(self) -> IngestResult:
        """Move the rows of dead workers' segments into the event log (see the module doc)."""
        with self._move_lock:
            for seg in self._wal.orphans():
                log.warning("replaying %d beacon events from %s", len(seg.rows), seg.path.name)
                self._sealed.append(seg)
            return self._move_sealed()

    def _move_sealed(self) -> IngestResult:
        total = IngestResult()
        while self._sealed:
            seg = self._sealed[0]
            for start in range(0, len(seg.rows), _CHUNK):
                result = ingest_events(
                    store=self._store, events=seg.rows[start : start + _CHUNK], lookup=None
                )
                if result.rejected:  # built from signed tokens: only a bug gets here
                    chunk = seg.rows[start : start + _CHUNK]
                    log.error(
                        "%s: %d beacon events refused by the event log: %s",
                        seg.path,
                        len(result.rejected),
                        [(item, chunk[item["index"]]) for item in result.rejected[:20]],
                    )
                total.merge(result)
            self._wal.release(seg)
            self._sealed.pop(0)
        return total

    def _run(self) -> None:
        # The first validation imports pandas (pyarrow's list conversion does, ~1 s): here, at
        # start, not in the middle of the first burst of beacons (a 1 s stall in the profile).
        validate_events([{"event_id": "warm-up", "type": "click"}])
        last_scan = time.monotonic()
        pause = self._flush_interval_s
        while not self._stop.is_set():
            self._wake.wait(pause)
            self._wake.clear()
            try:
                if time.monotonic() - last_scan >= ORPHAN_SCAN_S:
                    last_scan = time.monotonic()
                    self.replay()
                self.flush()
                pause = self._flush_interval_s
            except Exception:  # the rows stay in the write-ahead file; retried with backoff
                log.exception("moving beacon events into the event log failed; retrying")
                pause = min(max(pause, 0.1) * 2, 5.0)

    def close(self) -> None:
        """Stop the mover after a last move; what cannot be moved stays on disk for replay."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        try:
            self.flush()
        except Exception:
            log.exception("beacon events left in the write-ahead file; the next start replays")
        with self._move_lock:
            for seg in self._sealed:  # unlock: the next start (or another worker) replays them
                self._wal.abandon(seg)
            self._sealed.clear()
        self._wal.close()
