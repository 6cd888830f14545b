"""Profile updates from NATS JetStream: a durable pull consumer that acks only what is logged.

Why this shape: each message is one update object, exactly what ``POST /v1/profiles/updates``
takes in its list, or a batch of them with the route's own body, ``{"updates": [...]}`` (a
producer that batches saves the broker and this consumer a message per update: per-message
work in nats-py was 70% of a one-update-per-message consumer, profiled). A batch of messages
is fetched, validated and committed to the update log, and only then acknowledged; a consumer
killed between the commit and the ack gets those messages redelivered, and their
``update_id``s come back as duplicates, so nothing is lost and nothing applies twice. Several
consumers bound to the same durable name share the stream (JetStream hands each message to
one of them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from adtarget.audience.stores import live_follower, profile_writer, snapshot_store_for
from adtarget.catalog.db import open_catalog
from adtarget.errors import AdtargetError, InvalidValue
from adtarget.ingest.schema import load_registry
from adtarget.ingest.updates import MAX_BATCH, accept_updates
from adtarget.settings import Settings

log = logging.getLogger("adtarget.stream")
REGISTRY_TTL_S = 5.0
ACK_WAIT_S = 5.0


@dataclass
class StreamStats:
    """What a consumer run did."""

    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    malformed: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)

    def to_dict(self) -> dict[str, Any]:
        """JSON for the CLI."""
        secs = max(time.monotonic() - self.started, 1e-9)
        return {
            "messages": self.messages,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "malformed": self.malformed,
            "seconds": round(secs, 3),
            "per_second": round(self.messages / secs, 1),
        }


def _nats() -> Any:
    try:
        import nats
    except ImportError:  # pragma: no cover - the dev extra installs it
        raise AdtargetError(
            "adtarget stream needs nats-py: pip install 'adtarget[stream]'", field="broker"
        ) from None
    return nats


class UpdateRegistry:
    """The dimension registry, re-read from the catalog every few seconds."""

    def __init__(self, settings: Settings) -> None:

        self.factory = open_catalog(settings)
        self.store = snapshot_store_for(settings)
        self.profiles = profile_writer(settings)
        self._at = 0.0
        self._value: dict[str, Any] = {}

    def get(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._at >= REGISTRY_TTL_S:
            snap = self.store.current()  # also opens the live audience this process applies to
            merged: dict[str, Any] = dict(snap.registry) if snap is not None else {}
            with self.factory() as session:
                merged.update(load_registry(session))
            self._value, self._at = merged, now
        return self._value


async def consume(
    settings: Settings,
    *,
    url: str,
    stream: str,
    subject: str,
    durable: str,
    batch: int = 1000,
    create: bool = False,
    max_messages: int | None = None,
    idle_exit_s: float | None = None,
    on_batch: Callable[[StreamStats], None] | None = None,
) -> StreamStats:
    """Consume update messages until ``max_messages`` or ``idle_exit_s`` without any."""
    nats = _nats()
    registry = UpdateRegistry(settings)
    follower = live_follower(settings)
    stats = StreamStats()
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        if create:
            await js.add_stream(name=stream, subjects=[subject])
        from nats.js.api import ConsumerConfig

        # At most one batch unacknowledged: after a crash the unacked batch is redelivered
        # (after ACK_WAIT_S) before anything newer, so updates keep the stream's order.
        config = ConsumerConfig(ack_wait=ACK_WAIT_S, max_ack_pending=batch)
        sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
        idle_since = time.monotonic()
        while max_messages is None or stats.messages < max_messages:
            want = batch if max_messages is None else min(batch, max_messages - stats.messages)
            try:
                msgs = await sub.fetch(want, timeout=1)
            except TimeoutError:
                # nats-py raises its own TimeoutError (a subclass) or, when the deadline runs
                # out between its two pull requests, plain asyncio.TimeoutError: both mean
                # "nothing arrived in time", never a failure.
                msgs = []
            if not msgs:
                if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
                continue
            idle_since = time.monotonic()
            await _apply(msgs, registry, follower, stats)
            if on_batch is not None:
                on_batch(stats)
    finally:
        await nc.close()
    return stats


def updates_of(payload: bytes) -> list[Any] | None:
    """The update objects one message carries: one update, or ``{"updates": [...]}`` (the
    body of ``POST /v1/profiles/updates``); ``None`` when it is neither (malformed)."""
    try:
        got = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(got, dict) and "updates" in got and "update_id" not in got:
        batch = got["updates"]
        return batch if isinstance(batch, list) else None
    return [got]


def accept_all(
    updates: list[Any], registry: UpdateRegistry, follower: Any, stats: StreamStats
) -> None:
    """``accept_updates`` over any number of updates (``MAX_BATCH`` per call), counted."""
    for start in range(0, len(updates), MAX_BATCH):
        result = accept_updates(
            updates[start : start + MAX_BATCH],
            registry=registry.get(),
            follower=follower,
            profiles=registry.profiles,
        )
        stats.accepted += result.accepted
        stats.duplicates += result.duplicates
        stats.rejected += len(result.rejected)
        for r in result.rejected:
            log.warning("update rejected: %s", r["reason"])


async def _apply(
    msgs: list[Any], registry: UpdateRegistry, follower: Any, stats: StreamStats
) -> None:
    """Log one fetched batch durably, then ack it (bad messages are terminated, not retried)."""
    updates: list[Any] = []
    kept: list[Any] = []
    for msg in msgs:
        got = updates_of(msg.data)
        if got is None:
            stats.malformed += 1
            log.warning(
                "stream message %s is not an update or a batch; dropped", msg.metadata.sequence
            )
            await msg.term()
            continue
        updates.extend(got)
        kept.append(msg)
    if updates:
        await asyncio.to_thread(accept_all, updates, registry, follower, stats)
    for msg in kept:  # only now: every kept message is in the log (or rejected for good)
        await msg.ack()
    stats.messages += len(msgs)
    stats.batches += 1


def run_consumer(settings: Settings, **kwargs: Any) -> StreamStats:
    """``consume`` from synchronous code (the CLI)."""
    if not kwargs.get("stream") or not kwargs.get("subject"):
        raise InvalidValue("give --stream and --subject (NATS)", field="subject")
    return asyncio.run(consume(settings, **kwargs))
