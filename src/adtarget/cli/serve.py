"""``adtarget serve``: the HTTP service under uvicorn (uvloop + httptools), N worker processes.

Why the checks here: with no API key at all the service runs open (every caller is admin), which
is only safe on loopback, so ``serve`` says so and refuses any other address. Each worker runs
``adtarget.api.app:create_app`` and maps the same snapshot files; Prometheus samples of all
workers are aggregated through ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from typing import Annotated

import typer

from adtarget.api.auth import KeyResolver
from adtarget.cli.container import CliContainer, cli_container
from adtarget.settings import Settings, get_settings

APP_FACTORY = "adtarget.api.app:create_app"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def open_mode(container: CliContainer) -> bool:
    """True when no API key exists at all (no admin env key, no live key in the catalog)."""
    factory = container.session_factory
    resolver = KeyResolver(
        session_factory=lambda: factory,
        admin_key=container.settings.admin_key,
        allow_open=container.settings.allow_open,
    )
    return resolver.open_mode()


def prepare_multiprocess_metrics(settings: Settings, workers: int) -> None:
    """Give the workers a fresh shared directory for Prometheus samples (when N > 1)."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    path = settings.data_dir / "prometheus-multiproc"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve the HTTP API (catalog, audiences, decisions, events, reports)."""
    import uvicorn

    container = cli_container()
    settings = container.settings
    run_open = open_mode(container)
    if run_open:
        if not is_loopback(host):
            typer.echo(
                f"refusing to bind {host}: no API key exists, so the API would be open to anyone. "
                "Create one with `adtarget keys create --role admin` or set ADTARGET_ADMIN_KEY.",
                err=True,
            )
            raise typer.Exit(2)
        typer.echo(
            "WARNING: no API key exists: the API runs OPEN (every caller is admin), "
            "loopback only. Create a key with `adtarget keys create --role admin`.",
            err=True,
        )
    # The workers inherit this decision: none of them may decide open mode on its own later.
    os.environ["ADTARGET_ALLOW_OPEN"] = "true" if run_open and settings.allow_open else "false"
    get_settings.cache_clear()
    prepare_multiprocess_metrics(settings, workers)
    base = f"http://{host}:{port}"
    typer.echo(
        f"adtarget serving on {base} with {workers} worker(s); console: {base}/console", err=True
    )
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=5,
    )


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``adtarget`` command."""
    app.command("serve")(serve)
