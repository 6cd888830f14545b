"""Beacons into the event log by group commit: many players' requests, one append.

Why batch: a beacon is one tiny event, and the event log's append (a dedup lookup, a Parquet
part, the rollups, in one transaction) costs about the same for one event as for hundreds
(Parquet store: ~8 ms for 8 events, ~9 ms for 64, ~17 ms for 512). So beacons arriving together
wait at most ``max_wait_s`` (a few ms), and while one batch is being written everything arriving
queues up and goes out as the next batch the moment it is stored — the batch grows with the
load, one write in flight per worker. Each batch is appended in a worker thread, and each
request is answered when its batch is stored, so an answered beacon is durable. Duplicates
(a player's retry, two concurrent copies) are dropped by ``event_id`` (``decision_id.event``) in
the batch or against the log, so each is counted once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from adtarget.delivery.service import IngestResult, ingest_events
from adtarget.delivery.store import EventStore
from adtarget.errors import InvalidValue

log = logging.getLogger("adtarget.delivery")
_Waiting = tuple[dict[str, Any], "asyncio.Future[None]"]


class BeaconIntake:
    """Group commit of beacon events for one event loop (one per worker)."""

    def __init__(
        self,
        store: EventStore,
        *,
        max_batch: int = 4096,
        max_wait_s: float = 0.004,
        on_batch: Callable[[IngestResult], None] | None = None,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        # Per event loop: uvicorn runs one per worker, but a test client may run one per
        # request, and a future must be completed on its own loop.
        self._pending: dict[asyncio.AbstractEventLoop, list[_Waiting]] = {}
        self._timers: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        self._write_lock = threading.Lock()  # batches are appended one after the other
        self._writing: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._busy: set[asyncio.AbstractEventLoop] = set()  # loops with a batch being written

    async def record(self, row: dict[str, Any]) -> None:
        """Queue one event and return once the batch holding it is stored (or raise its error)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        pending = self._pending.setdefault(loop, [])
        pending.append((row, done))
        if loop in self._busy:
            pass  # a batch is being written: this one goes out the moment it is stored
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

    async def _write(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[dict[str, Any], asyncio.Future[None]]],
    ) -> None:
        try:
            await self._store_batch(loop, batch)
        finally:
            self._busy.discard(loop)
            if self._pending.get(loop):  # what arrived meanwhile: one batch, now
                self._flush(loop)

    async def _store_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting]) -> None:
        rows = [row for row, _ in batch]
        try:
            result = await loop.run_in_executor(None, self._append, rows)
        except Exception as exc:  # every request of the batch learns it failed
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        refused = {item["index"]: item for item in result.rejected}
        if refused:  # signed by us, so only a bug gets here: say it, loudly, and to the caller
            log.error("beacon events rejected by the event log: %s", result.rejected[:5])
        if self._on_batch is not None:
            self._on_batch(result)
        for i, (_, done) in enumerate(batch):
            if done.done():
                continue
            if i in refused:
                why = refused[i]
                done.set_exception(InvalidValue(why["reason"], field=why.get("field")))
            else:
                done.set_result(None)

    def _append(self, rows: list[dict[str, Any]]) -> IngestResult:
        with self._write_lock:
            return ingest_events(store=self._store, events=rows, lookup=None)
