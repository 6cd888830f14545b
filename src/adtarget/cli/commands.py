"""``adtarget undo | redo | history``: the command history of the CLI user.

The actor is ``ADTARGET_ACTOR`` when set, else ``cli:<os user>``, so a person's CLI undo only
ever reverses that person's CLI changes (API keys have their own actors). Errors (nothing to
undo, a refused undo because someone changed the row since) go to stderr with exit code 1.
"""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import typer

from adtarget.errors import AdtargetError
from adtarget.settings import Settings, get_settings

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def cli_actor(settings: Settings) -> str:
    """``settings.actor`` or ``cli:<os user>``."""
    if settings.actor:
        return settings.actor
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry / no env (containers)
        user = "unknown"
    return f"cli:{user}"


def _writer() -> Any:
    from adtarget.catalog.db import open_catalog
    from adtarget.commands.catalog_commands import CatalogWriter

    settings = get_settings()
    return CatalogWriter(
        open_catalog(settings),
        actor=cli_actor(settings),
        depth=settings.history_depth,
        settings=settings,
    )


def _fail(err: AdtargetError) -> None:
    typer.echo(f"error: {err.message}", err=True)
    raise typer.Exit(1)


def _step(verb: str, as_json: bool) -> None:
    try:
        writer = _writer()
        out: dict[str, Any] = writer.undo() if verb == "undone" else writer.redo()
    except AdtargetError as err:
        _fail(err)
        return
    if as_json:
        typer.echo(json.dumps(out))
        return
    item = out[verb]
    typer.echo(f"{verb} #{item['id']}: {item['description']}")
    if out.get("note"):
        typer.echo(f"note: {out['note']}")


def undo(as_json: JsonOpt = False) -> None:
    """Undo your most recent catalog change."""
    _step("undone", as_json)


def redo(as_json: JsonOpt = False) -> None:
    """Redo your most recently undone catalog change."""
    _step("redone", as_json)


def history(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many entries.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Your catalog changes, newest first (undone ones marked)."""
    try:
        rows = _writer().history(limit)
    except AdtargetError as err:
        _fail(err)
        return
    if as_json:
        typer.echo(json.dumps({"commands": rows}))
        return
    if not rows:
        typer.echo("no commands yet")
        return
    for r in rows:
        mark = "undone" if r["state"] == "undone" else "      "
        typer.echo(f"{r['id']:>6}  {r['created_at'][:19]}  {mark}  {r['description']}")


def register(app: typer.Typer) -> None:
    """Add ``undo``, ``redo`` and ``history`` to the ``adtarget`` command."""
    app.command("undo")(undo)
    app.command("redo")(redo)
    app.command("history")(history)
