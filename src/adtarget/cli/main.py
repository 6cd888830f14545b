"""The ``adtarget`` command: one Typer app; each domain module adds its subcommands.

Why a callback sets the environment: every subcommand reads configuration through
``adtarget.settings.get_settings()``; ``--data-dir`` exports ``ADTARGET_DATA_DIR`` and clears the
cached settings before any subcommand runs, so all of them (and worker processes started by
``serve``) see the same data dir. It then starts the CLI's composition root
(``cli/container.py``): the one place that builds the catalog sessions, the command writer and
the stores the subcommands use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from adtarget import __version__
from adtarget.cli import (
    audience,
    catalog,
    catalog_code,
    commands,
    delivery,
    demo,
    forecast,
    ingest,
    keys,
    profiles,
    serve,
    shards,
    stream,
)
from adtarget.cli.container import start
from adtarget.cli.errors import fail
from adtarget.errors import AdtargetError, InvalidValue
from adtarget.settings import get_settings

app = typer.Typer(
    name="adtarget",
    help="Ads audience targeting: catalog with undo, audiences, decisions, reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"adtarget {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="ADTARGET_DATA_DIR",
            help="Data directory (catalog, snapshots, events). Env: ADTARGET_DATA_DIR.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """adtarget: ads audience targeting."""
    if data_dir is not None:
        os.environ["ADTARGET_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
    try:
        settings = get_settings()  # a bad ADTARGET_* value: one error line naming it
        if settings.data_dir.exists() and not settings.data_dir.is_dir():
            raise InvalidValue(
                f"the data dir {settings.data_dir} is a file, not a directory; point "
                "--data-dir (ADTARGET_DATA_DIR) at a directory",
                field="data_dir",
            )
    except AdtargetError as err:
        raise fail(err, 2) from None
    start(settings)  # the composition root every subcommand reads (cli/container.py)


def _register_all() -> None:

    for module in (
        demo,
        serve,
        keys,
        catalog,
        catalog_code,
        commands,
        ingest,
        audience,
        profiles,
        delivery,
        forecast,
        shards,
        stream,
    ):
        module.register(app)


_register_all()


if __name__ == "__main__":  # pragma: no cover - `python -m adtarget.cli.main`
    app()


def run() -> None:
    """The ``adtarget`` entry point: ``app``, with any setup mistake a subcommand did not
    report itself (an unreachable catalog, an unusable URL) as one ``error:`` line, exit 2."""
    try:
        app()
    except AdtargetError as err:
        fail(err, 2)  # prints the line; outside Click, exit by SystemExit
        raise SystemExit(2) from None
