"""``adtarget stream``: apply profile updates from NATS JetStream or Redis Streams as they arrive.

Why a command and not a thread of ``serve``: intake at broker volume is its own process to
scale (run several with the same ``--durable``, or the same Redis ``--group`` and distinct
``--consumer`` names, to share a stream); what it applies reaches the
serving processes through the update log within ``ADTARGET_UPDATES_POLL_MS``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from adtarget.cli.container import cli_container
from adtarget.cli.errors import fail
from adtarget.errors import AdtargetError, InvalidValue
from adtarget.ingest.redis_stream import consume_redis
from adtarget.ingest.stream import StreamStats, run_consumer


def stream(
    stream_name: Annotated[
        str, typer.Option("--stream", help="JetStream stream name, or the Redis stream key.")
    ],
    subject: Annotated[
        str | None, typer.Option(help="NATS subject the update messages are published on.")
    ] = None,
    broker: Annotated[
        str, typer.Option(help="nats (JetStream) or redis (Redis Streams, a consumer group).")
    ] = "nats",
    url: Annotated[str, typer.Option("--nats", help="NATS server URL.")] = "nats://127.0.0.1:4222",
    redis_url: Annotated[
        str | None,
        typer.Option("--redis", help="Redis URL (default ADTARGET_REDIS_URL, else local)."),
    ] = None,
    durable: Annotated[
        str, typer.Option(help="Durable consumer name (consumers sharing it share the stream).")
    ] = "adtarget-updates",
    group: Annotated[
        str | None, typer.Option(help="Redis consumer group (default: the --durable name).")
    ] = None,
    consumer: Annotated[
        str | None,
        typer.Option(help="Redis consumer name, one per running consumer (default: per host)."),
    ] = None,
    claim_idle: Annotated[
        float,
        typer.Option(help="Redis: take over entries another consumer left pending this long (s)."),
    ] = 30.0,
    batch: Annotated[int, typer.Option(min=1, max=50_000, help="Messages per fetch.")] = 1000,
    create: Annotated[bool, typer.Option(help="Create the stream if it does not exist.")] = False,
    max_messages: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Stop after this many seconds with no message.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress line on stderr.")] = False,
) -> None:
    """Consume update objects (one JSON object per message), log them durably, then ack."""

    def progress(stats: StreamStats) -> None:
        if not quiet:
            d = stats.to_dict()
            sys.stderr.write(
                f"\r{d['messages']} messages, {d['accepted']} accepted, "
                f"{d['duplicates']} duplicates, {d['rejected']} rejected, "
                f"{d['per_second']}/s   "
            )

    settings = cli_container().settings
    try:
        if broker == "redis":
            stats = consume_redis(
                settings,
                url=redis_url,
                stream=stream_name,
                group=group or durable,
                consumer=consumer,
                batch=batch,
                max_messages=max_messages,
                idle_exit_s=idle_exit,
                claim_idle_s=claim_idle,
                on_batch=progress,
            )
        elif broker == "nats":
            stats = run_consumer(
                settings,
                url=url,
                stream=stream_name,
                subject=subject,
                durable=durable,
                batch=batch,
                create=create,
                max_messages=max_messages,
                idle_exit_s=idle_exit,
                on_batch=progress,
            )
        else:
            raise InvalidValue(f"--broker {broker!r} is not nats or redis", field="broker")
    except AdtargetError as err:
        raise fail(err, 1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if not quiet:
        sys.stderr.write("\n")
    print(json.dumps(stats.to_dict()))


def register(app: typer.Typer) -> None:
    """Add ``adtarget stream``."""
    app.command("stream")(stream)
