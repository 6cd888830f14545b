"""Prometheus metrics: request latency by route, decisions served, degraded answers, shed load,
and decision index rebuilds (how long, how big, how fresh).

Why module-level metrics: prometheus_client registers metrics in one process-wide registry, so
several apps in one process (tests) share them. With several ``adtarget serve`` workers,
``serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start; then every worker writes
its samples to files there and ``/metrics`` (answered by any worker) aggregates all of them.
Without it (one worker, tests) ``/metrics`` shows this process only.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

REQUEST_LATENCY = Histogram(
    "adtarget_http_request_duration_seconds",
    "HTTP request latency by route template, method and status class.",
    ("route", "method", "status"),
    buckets=LATENCY_BUCKETS,
)
DECISIONS = Counter("adtarget_decisions_total", "Decision requests answered (one per request).")
DECISIONS_SERVED = Counter(
    "adtarget_decisions_served_total", "Line items returned in decision answers."
)
DEGRADED = Counter(
    "adtarget_decisions_degraded_total",
    "Decision answers marked degraded (a store was slow or down, or the deadline hit).",
)
SHED = Counter(
    "adtarget_requests_shed_total", "Requests refused with 503 because too many were in flight."
)
BEACONS = Counter(
    "adtarget_beacons_total",
    "Tracking beacons accepted (duplicates included), by event.",
    ["event"],
)
BEACONS_REFUSED = Counter(
    "adtarget_beacons_refused_total",
    "Tracking beacons refused (forged, tampered, wrong key, expired), by reason.",
    ["reason"],
)
BEACONS_DEFERRED = Counter(
    "adtarget_beacons_deferred_total",
    "Valid beacons answered 503 (write-ahead backlog full or its disk failing); players retry.",
)
DEADLINE_EXCEEDED = Counter(
    "adtarget_requests_deadline_exceeded_total", "Requests answered early because of a deadline."
)
INDEX_REBUILD = Histogram(
    "adtarget_index_rebuild_seconds",
    "Decision index rebuilds after a catalog change (load + build + swap), by result.",
    ("result",),
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
INDEX_LINE_ITEMS = Gauge(
    "adtarget_index_line_items",
    "Live line items in the decision index a worker serves.",
    multiprocess_mode="max",
)
INDEX_BUILT_AT = Gauge(
    "adtarget_index_built_timestamp_seconds",
    "Unix time of the last successful decision index rebuild (freshness: now minus this).",
    multiprocess_mode="max",
)
INDEX_PATCH = Histogram(
    "adtarget_index_patch_seconds",
    "Decision index patches after a catalog change (reload the reached line items + swap).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
INDEX_DISAGREEMENTS = Counter(
    "adtarget_index_disagreements_total",
    "Agreement checks where a rebuild differed from the patched index (healed by the rebuild).",
)
INFLIGHT = Gauge(
    "adtarget_requests_inflight", "Requests being processed.", multiprocess_mode="livesum"
)


def record_index_rebuild(seconds: float, index: Any) -> None:
    """``IndexHolder``'s rebuild hook: duration by result, size and time of the last good one."""
    INDEX_REBUILD.labels("ok" if index is not None else "failed").observe(seconds)
    if index is not None:
        INDEX_LINE_ITEMS.set(len(index))
        INDEX_BUILT_AT.set(time.time())


def record_index_patch(seconds: float, reloaded: int) -> None:
    """``IndexHolder``'s patch hook: how long a patch took (``reloaded`` is not a label)."""
    INDEX_PATCH.observe(seconds)


def record_index_disagreement(wrong: set[int]) -> None:
    """``IndexHolder``'s disagreement hook: one more check that found a wrong patch."""
    INDEX_DISAGREEMENTS.inc()


def render_metrics() -> tuple[bytes, str]:
    """The exposition text and its content type (aggregated over workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
