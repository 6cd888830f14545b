"""Profile updates from a Redis Stream through a consumer group: ack only what is logged.

Why this shape: Redis is already a dependency, and a consumer group gives what JetStream's
durable consumer gives: each entry goes to one consumer of the group, and stays in that
consumer's pending list until it is acknowledged (``XACK``). A batch is read, validated and
committed to the update log in one ``accept_updates`` call, and only then acknowledged, so a
consumer killed between the commit and the ack still has those entries pending; when it starts
again under the same ``--consumer`` name it reads its own pending entries first (``XREADGROUP``
from id ``0``), before anything new, and their ``update_id``s come back as duplicates. Entries
left pending by a consumer that never comes back are taken over (``XAUTOCLAIM``) by a live one
once idle for ``claim_idle_s``.

Each entry carries one update object as JSON in its ``update`` field:
``XADD PROFILES * update '{"update_id": "e1", "user_id": "u42", "set": {"plan": "premium"}}'``,
or a batch of them as the HTTP route takes it: ``update '{"updates": [{...}, {...}]}'``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from adtarget.audience.redis_profiles import open_client
from adtarget.audience.stores import live_follower
from adtarget.errors import InvalidValue
from adtarget.ingest.stream import StreamStats, UpdateRegistry, accept_all, updates_of
from adtarget.settings import Settings

log = logging.getLogger("adtarget.stream")
FIELD = b"update"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
BLOCK_MS = 1000


def default_consumer() -> str:
    """This host's consumer name: a restart on the same host finds its own pending entries."""
    return f"adtarget-{socket.gethostname()}"


def ensure_group(client: Any, key: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists; it reads from the start."""
    try:
        client.xgroup_create(key, group, id="0", mkstream=True)
    except Exception as exc:  # redis.ResponseError; redis itself is imported by open_client only
        if "BUSYGROUP" not in str(exc):
            raise


def consume_redis(
    settings: Settings,
    *,
    url: str | None,
    stream: str,
    group: str,
    consumer: str | None = None,
    batch: int = 1000,
    max_messages: int | None = None,
    idle_exit_s: float | None = None,
    claim_idle_s: float = 30.0,
    on_batch: Callable[[StreamStats], None] | None = None,
) -> StreamStats:
    """Consume update entries of ``stream`` as ``consumer`` of ``group`` until ``max_messages``
    or ``idle_exit_s`` seconds without any."""
    if not stream:
        raise InvalidValue("give --stream (the Redis stream key)", field="stream")
    client = open_client(url or settings.redis_url or DEFAULT_URL, cluster=settings.redis_cluster)
    name = consumer or default_consumer()
    registry = UpdateRegistry(settings)
    follower = live_follower(settings)
    stats = StreamStats()
    ensure_group(client, stream, group)
    cursor = "0"  # own pending entries first (a restart after a crash), then new ones (">")
    idle_since = time.monotonic()
    next_claim = time.monotonic() + claim_idle_s
    try:
        while max_messages is None or stats.messages < max_messages:
            want = batch if max_messages is None else min(batch, max_messages - stats.messages)
            entries: list[tuple[bytes, dict[bytes, bytes]]] = []
            if time.monotonic() >= next_claim:
                entries = _claim(client, stream, group, name, claim_idle_s, want)
                next_claim = time.monotonic() + claim_idle_s
            if not entries:
                block = None if cursor == "0" else BLOCK_MS  # pending: answered at once
                got = client.xreadgroup(group, name, {stream: cursor}, count=want, block=block)
                entries = list(got[0][1]) if got else []
                if cursor == "0" and not entries:
                    cursor = ">"
                    continue
            if not entries:
                if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
                continue
            idle_since = time.monotonic()
            _apply(client, stream, group, entries, registry, follower, stats)
            if on_batch is not None:
                on_batch(stats)
    finally:
        client.close()
    return stats


def _claim(
    client: Any, stream: str, group: str, name: str, idle_s: float, count: int
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Entries another consumer read but left unacknowledged for ``idle_s`` (it died)."""
    got = client.xautoclaim(stream, group, name, min_idle_time=int(idle_s * 1000), count=count)
    claimed = [(i, f) for i, f in got[1] if f is not None]
    if claimed:
        log.warning("took over %d entries another consumer left unacknowledged", len(claimed))
    return claimed


def _apply(
    client: Any,
    stream: str,
    group: str,
    entries: list[tuple[bytes, dict[bytes, bytes]]],
    registry: UpdateRegistry,
    follower: Any,
    stats: StreamStats,
) -> None:
    """Log one batch durably, then acknowledge every entry of it (malformed ones dropped)."""
    updates: list[Any] = []
    for entry_id, fields in entries:
        raw = (fields or {}).get(FIELD)  # fields are None for an entry trimmed meanwhile
        got = None if raw is None else updates_of(raw)
        if got is None:
            stats.malformed += 1
            log.warning("stream entry %s is not an update or a batch; dropped", entry_id)
            continue
        updates.extend(got)
    if updates:
        accept_all(updates, registry, follower, stats)
    client.xack(stream, group, *[entry_id for entry_id, _ in entries])  # only now: all logged
    stats.messages += len(entries)
    stats.batches += 1
