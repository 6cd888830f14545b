"""``adtarget stream``: apply profile updates from a NATS JetStream stream as they arrive.

Why a command and not a thread of ``serve``: intake at broker volume is its own process to
scale (run several with the same ``--durable`` to share a stream); what it applies reaches the
serving processes through the update log within ``ADTARGET_UPDATES_POLL_MS``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from adtarget.cli.container import cli_container
from adtarget.cli.errors import fail
from adtarget.errors import AdtargetError
from adtarget.ingest.stream import StreamStats, run_consumer


def stream(
    stream_name: Annotated[str, typer.Option("--stream", help="JetStream stream name.")],
    subject: Annotated[str, typer.Option(help="Subject the update messages are published on.")],
    url: Annotated[str, typer.Option("--nats", help="NATS server URL.")] = "nats://127.0.0.1:4222",
    durable: Annotated[
        str, typer.Option(help="Durable consumer name (consumers sharing it share the stream).")
    ] = "adtarget-updates",
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

    try:
        stats = run_consumer(
            cli_container().settings,
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
