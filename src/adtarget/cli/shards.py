"""``adtarget ray-cluster``: a local multi-node Ray cluster to try sharded audiences on.

Why a command: trying ``--engine ray`` and ``ADTARGET_AUDIENCE_BACKEND=ray`` needs a cluster
with several nodes; on one machine that is Ray's own test harness with every node on
127.0.0.1. It prints the address to export as ``ADTARGET_RAY_ADDRESS`` and runs until
interrupted, then stops every process it started.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from adtarget.audience.ray_runtime import start_local_cluster
from adtarget.cli.errors import fail
from adtarget.errors import AdtargetError


def ray_cluster(
    nodes: Annotated[int, typer.Option("--nodes", help="Nodes (1 CPU each).")] = 3,
    object_store_mb: Annotated[
        int, typer.Option("--object-store-mb", help="Object store per node, MB.")
    ] = 200,
) -> None:
    """Start a local multi-node Ray cluster on 127.0.0.1 and keep it up until Ctrl-C."""
    try:
        cluster = start_local_cluster(nodes, object_store_mb=object_store_mb)
    except AdtargetError as err:
        raise fail(err, 2) from None
    typer.echo(f"ray cluster of {nodes} nodes on 127.0.0.1; in another shell:")
    typer.echo(f"  export ADTARGET_RAY_ADDRESS={cluster.address}")
    typer.echo("  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        cluster.shutdown()
        typer.echo("ray cluster stopped")


def register(app: typer.Typer) -> None:
    """Add ``adtarget ray-cluster`` to the main app."""
    app.command("ray-cluster")(ray_cluster)
