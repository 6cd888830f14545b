"""The sampled request log: a configurable share of users' ad requests, written off the hot path.

Why users, not requests: the forecaster replays a user's requests through the frequency caps,
so it needs *every* request of a sampled user; sampling by a hash of the user id keeps whole
users (and a lower rate is a subset of a higher one). Why a queue and a thread: the decision
route pays one hash and one ``put_nowait`` (no I/O, no lock held); a full queue drops the
sample and counts it (``dropped``) instead of slowing the answer; a writer thread batches rows
into one Parquet file per flush and applies retention.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from datetime import UTC, datetime
from typing import Any

from adtarget.decision.models import DecisionRequest, DecisionResult
from adtarget.decision.request_store import RequestStore, SampledRequest
from adtarget.decision.request_stores import request_store_for
from adtarget.settings import Settings

log = logging.getLogger(__name__)

_SPACE = float(1 << 32)
PRUNE_EVERY_S = 3600.0


def user_fraction(user_id: str) -> float:
    """A stable number in [0, 1) per user id; a user is sampled when it is below the rate.

    CRC-32 of the UTF-8 id: the same on every process and version (Python's ``hash`` is salted
    per process), ~0.1 µs (BLAKE2b measured 0.75 µs, a third of the log's whole budget on the
    decision path), and uniform enough for sampling (shares within 1.5% of the rate at 0.01 on
    sequential ids ``u0``..``u199999``, ``user-00000000``.. and plain numbers).
    """
    return zlib.crc32(user_id.encode()) / _SPACE


class RequestLog:
    """Samples requests of a share of users and writes them in the background.

    Args:
        store: where rows go (``request_store_for(settings)``).
        sample_rate: share of users whose requests are kept (0 = off, 1 = everyone).
        queue_size: rows waiting for the writer at most; beyond, samples are dropped.
        flush_rows / flush_seconds: the writer writes a file when this many rows wait, and
            every this many seconds what has arrived since (at most that long after a row).
        retention_days: days older than this are deleted (checked hourly by the writer).
    """

    def __init__(
        self,
        store: RequestStore,
        *,
        sample_rate: float,
        queue_size: int = 100_000,
        flush_rows: int = 50_000,
        flush_seconds: float = 5.0,
        retention_days: int = 35,
    ) -> None:
        self.store = store
        self.sample_rate = sample_rate
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.retention_days = retention_days
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[SampledRequest | None] = queue.Queue(maxsize=queue_size)
        self._wake = threading.Event()  # a batch is full, or the log closes
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_prune = -PRUNE_EVERY_S

    @property
    def enabled(self) -> bool:
        """Whether any request is sampled."""
        return self.sample_rate > 0

    def record(
        self,
        request: DecisionRequest,
        result: DecisionResult,
        *,
        ts: float | None = None,
        pod: Any = None,
    ) -> bool:
        """Queue the request if its user is sampled (never blocks, never raises); whether kept.

        ``pod`` defaults to the request's own ``pod`` when it has one (ad breaks).
        """
        rate = self.sample_rate
        if rate <= 0 or (rate < 1 and zlib.crc32(request.user_id.encode()) >= rate * _SPACE):
            return False
        row = SampledRequest(
            ts=time.time() if ts is None else ts,
            user_id=request.user_id,
            context=dict(request.context),
            formats=request.formats,
            limit=request.limit,
            served=tuple(d.line_item_id for d in result.decisions),
            sample_rate=rate,
            pod=pod if pod is not None else getattr(request, "pod", None),
        )
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            return False
        if self._queue.qsize() >= self.flush_rows:
            self._wake.set()
        return True

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None and self.enabled:
            self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
            self._thread.start()

    def _drain(self) -> tuple[list[SampledRequest], bool]:
        """Every row queued now, without waiting; whether the log was closed."""
        rows: list[SampledRequest] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return rows, False
            if item is None:
                return rows, True
            rows.append(item)

    def _run(self) -> None:
        """Wake every ``flush_seconds`` (or when a batch is full, or on close) and write what
        is queued. Why not a ``get`` per row: the writer then woke for every sampled request
        and took the GIL from the decision path each time (3.5% of ``decide`` throughput at
        rate 0.01 with 10,000 line items); now it wakes once per batch."""
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            rows, stop = self._drain()
            for start in range(0, len(rows), self.flush_rows):
                self._write(rows[start : start + self.flush_rows])
            if not rows:
                self._write([])  # the hourly retention check, even when nothing is sampled
            if stop:
                return

    def _write(self, rows: list[SampledRequest]) -> None:
        with self._lock:
            try:
                if rows:
                    self.written += self.store.write(rows)
                now = time.monotonic()
                if now - self._last_prune >= PRUNE_EVERY_S:
                    self._last_prune = now
                    self.store.prune(self.retention_days, datetime.now(UTC))
            except Exception:  # a full disk must not stop decisions: the rows are lost, said so
                log.exception("request log: %d sampled rows could not be written", len(rows))

    def flush(self) -> int:
        """Write whatever is queued now, in the caller's thread; rows written (tests, CLI)."""
        rows: list[SampledRequest] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                rows.append(item)
        self._write(rows)
        return len(rows)

    def close(self) -> None:
        """Stop the writer after it wrote everything queued."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            self._wake.set()
            thread.join(timeout=30)
        self.flush()


def open_request_log(settings: Settings) -> RequestLog:
    """The log the app runs, per ``ADTARGET_REQUEST_LOG_*`` (not started: the caller starts it)."""
    return RequestLog(
        request_store_for(settings),
        sample_rate=settings.request_log_sample_rate,
        queue_size=settings.request_log_queue_size,
        flush_seconds=settings.request_log_flush_seconds,
        retention_days=settings.request_log_retention_days,
    )
