"""One pure-ASGI guard in front of every route: load shedding, body limit, deadline, metrics.

Why pure ASGI and one class: ``BaseHTTPMiddleware`` costs a task and a stream per request, which
is a visible share of a sub-millisecond decision. This class adds a counter, one wrapped ``send``
and one histogram observation.

- **Shedding**: at most ``max_inflight`` requests are processed at once per worker; the next one
  gets 503 ``overloaded`` with ``Retry-After`` at once instead of queueing without bound.
  Health and metrics routes are never shed (a load balancer must still see the node alive).
- **Body limit**: a ``Content-Length`` above ``max_body_bytes`` gets 413 before the body is read;
  a chunked body is counted as it streams. ``/v1/uploads`` is exempt (files stream to disk).
- **Metrics**: latency, in-flight and decision counts go through ``MetricBuffer`` (batched
  writes; see there).
- **Deadline**: ``X-Request-Deadline-Ms`` (positive integer) is stored in the scope as an
  absolute ``time.monotonic()`` deadline. The decision route reads it (default
  ``request_deadline_ms``) and answers degraded rather than late; for other routes the guard
  answers 503 ``deadline_exceeded`` if the route has not started its answer in time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adtarget.api import metrics
from adtarget.api.errors import send_error
from adtarget.errors import AdtargetError, Overloaded, PayloadTooLarge

DEADLINE_HEADER = b"x-request-deadline-ms"
DEADLINE_SCOPE_KEY = "adtarget.deadline"
UNSHED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
UNLIMITED_BODY_PREFIXES = ("/v1/uploads",)
SELF_DEADLINE_PATHS = frozenset({"/v1/decisions"})


STALE_S = 1.0
"""A scheduled flush that has not run after this long (its loop stopped) is done inline."""


class MetricBuffer:
    """This process's counter increments and latency observations, written in batches.

    Why: with ``serve --workers N`` prometheus_client writes every update to a memory-mapped
    file (lock, ``getpid``, pack): the five updates of one decision cost ~16 µs, a tenth of the
    request. Updates are summed here and written by one callback at the next turn of the event
    loop, so the requests answered in one turn share one write per metric, and a lone request
    is visible as soon as its answer is sent. ``/metrics`` flushes this process first.
    Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, list[float]] = {}
        self._scheduled_at: float | None = None

    def inc(self, metric: Any, amount: float = 1.0) -> None:
        """Add ``amount`` to a counter or gauge (``metric.inc(amount)`` on flush)."""
        with self._lock:
            self._counts[metric] = self._counts.get(metric, 0.0) + amount

    def observe(self, child: Any, value: float) -> None:
        """Record one histogram observation."""
        with self._lock:
            found = self._observed.get(child)
            if found is None:
                self._observed[child] = [value]
            else:
                found.append(value)

    def maybe_flush(self) -> None:
        """Make sure a flush runs at the next turn of the running loop (now if there is none)."""
        scheduled = self._scheduled_at
        if scheduled is not None and time.monotonic() - scheduled < STALE_S:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if scheduled is not None:  # scheduled on a loop that stopped (a test client's)
            self.flush()
        self._scheduled_at = time.monotonic()
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write everything buffered to prometheus_client."""
        with self._lock:
            counts, self._counts = self._counts, {}
            observed, self._observed = self._observed, {}
            self._scheduled_at = None
        for metric, amount in counts.items():
            if amount:
                metric.inc(amount)
        for child, values in observed.items():
            _observe_many(child, values)


def _observe_many(child: Any, values: list[float]) -> None:
    """``child.observe(v)`` for each value, as one sum and one increment per bucket."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None:  # another client version
        for v in values:
            child.observe(v)
        return
    per: dict[int, int] = {}
    for v in values:
        i = bisect_left(bounds, v)  # the first bound >= v, as ``Histogram.observe`` picks
        if i < len(bounds):
            per[i] = per.get(i, 0) + 1
    total.inc(sum(values))
    for i, n in per.items():
        buckets[i].inc(n)


class BadHeader(AdtargetError):
    """A request header the guard cannot use (400, like a malformed body)."""

    code = "invalid_value"


class DeadlineExceeded(AdtargetError):
    """No answer within the request's deadline (503: the client may retry at once)."""

    code = "deadline_exceeded"
    http_status = 503


METRICS = MetricBuffer()
"""The process's buffer (prometheus_client's registry is process-wide too)."""


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CATALOG_WRITE_PREFIXES = (
    "/v1/advertisers",
    "/v1/campaigns",
    "/v1/line-items",
    "/v1/creatives",
    "/v1/segments",
    "/v1/dimensions",
    "/v1/commands",
    "/v1/uploads",
    "/v1/snapshots",
)
"""Writes that can change the live line items; sizing, decisions and events never wake it."""


class GuardMiddleware:
    """Bounded in-flight requests, request body limit, deadlines and latency metrics."""

    def __init__(self, app: ASGIApp, *, max_inflight: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.max_body_bytes = max_body_bytes
        #: called after a successful write to a route that changes what decisions serve
        #: (``CATALOG_WRITE_PREFIXES``): the app wakes its decision index there.
        self.on_catalog_write: Callable[[], None] | None = None
        self.inflight = 0
        self._latency: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/metrics":
            METRICS.flush()
        if path not in UNSHED_PATHS and self.inflight >= self.max_inflight:
            metrics.SHED.inc()
            await send_error(send, Overloaded("too many requests in flight; retry shortly"))
            return

        content_length: int | None = None
        deadline_ms: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    content_length = None
            elif name == DEADLINE_HEADER:
                try:
                    deadline_ms = int(value)
                except ValueError:
                    deadline_ms = 0
                if deadline_ms <= 0:
                    await send_error(
                        send,
                        BadHeader(
                            "X-Request-Deadline-Ms must be a positive integer (milliseconds)",
                            field="X-Request-Deadline-Ms",
                        ),
                    )
                    return

        limited = not path.startswith(UNLIMITED_BODY_PREFIXES)
        if limited and content_length is not None and content_length > self.max_body_bytes:
            await send_error(
                send,
                PayloadTooLarge(
                    f"request body is {content_length} bytes; the limit is {self.max_body_bytes}",
                    field="body",
                ),
            )
            return
        if limited and content_length is None:
            receive = self._counting_receive(receive)

        started = time.perf_counter()
        status_holder = [500]
        started_response = [False]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                started_response[0] = True
            await send(message)

        self.inflight += 1
        METRICS.inc(metrics.INFLIGHT)
        try:
            if deadline_ms is not None:
                scope[DEADLINE_SCOPE_KEY] = time.monotonic() + deadline_ms / 1000.0
            if deadline_ms is not None and path not in SELF_DEADLINE_PATHS:
                await self._with_deadline(
                    scope, receive, send_wrapper, deadline_ms, started_response
                )
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            self.inflight -= 1
            METRICS.inc(metrics.INFLIGHT, -1.0)
            key = (_route_label(scope), scope["method"], status_holder[0] // 100)
            child = self._latency.get(key)
            if child is None:
                child = metrics.REQUEST_LATENCY.labels(key[0], key[1], f"{key[2]}xx")
                self._latency[key] = child
            METRICS.observe(child, time.perf_counter() - started)
            METRICS.maybe_flush()
            if (
                self.on_catalog_write is not None
                and status_holder[0] < 400
                and scope["method"] in WRITE_METHODS
                and path.startswith(CATALOG_WRITE_PREFIXES)
            ):
                self.on_catalog_write()

    async def _with_deadline(
        self, scope: Scope, receive: Receive, send: Send, deadline_ms: int, started: list[bool]
    ) -> None:
        try:
            await asyncio.wait_for(self.app(scope, receive, send), deadline_ms / 1000.0)
        except TimeoutError:
            metrics.DEADLINE_EXCEEDED.inc()
            if not started[0]:
                await send_error(
                    send,
                    DeadlineExceeded(
                        f"no answer within the {deadline_ms} ms deadline",
                        field="X-Request-Deadline-Ms",
                    ),
                )

    def _counting_receive(self, receive: Receive) -> Receive:
        seen = [0]
        limit = self.max_body_bytes

        async def wrapped() -> Message:
            message: dict[str, Any] = dict(await receive())
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise PayloadTooLarge(
                        f"request body exceeds the limit of {limit} bytes", field="body"
                    )
            return message

        return wrapped
