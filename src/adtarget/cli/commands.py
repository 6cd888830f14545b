"""``adtarget undo | redo | history``: the command history of the CLI user.

The actor is ``ADTARGET_ACTOR`` when set, else ``cli:<os user>``, so a person's CLI undo only
ever reverses that person's CLI changes (API keys have their own actors). Errors (nothing to
undo, a refused undo because someone changed the row since) go to stderr with exit code 1.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from adtarget.cli import show as display
from adtarget.cli.container import cli_actor as cli_actor
from adtarget.cli.container import cli_container
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.errors import AdtargetError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _writer() -> CatalogWriter:
    return cli_container().writer()


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
    for row in _rows(out["result"]):
        what = "removed" if not row["exists"] else "restored" if verb == "undone" else "re-applied"
        fields = ", ".join(
            f"{k}: {display.text(k, v[0])} -> {display.text(k, v[1])}"
            for k, v in row["fields"].items()
        )
        label = " ".join(str(v) for v in row["key"].values())
        typer.echo(f"  {row['kind']} {label} {what}" + (f" ({fields})" if fields else ""))
    result = out.get("result") or {}
    if result.get("dimensions_removed"):
        typer.echo(
            f"  dimensions it registered, removed: {', '.join(result['dimensions_removed'])}"
        )
    for name, why in (result.get("dimensions_kept") or {}).items():
        typer.echo(f"  dimension {name} kept: {why}")
    if out.get("note"):
        typer.echo(f"note: {out['note']}")


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-row reports of a result, through composites (``parts``)."""
    rows: list[dict[str, Any]] = list(result.get("rows", []))
    for part in result.get("parts", []):
        rows.extend(_rows(part))
    return rows


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

    table = Table(title=f"history of {rows[0]['actor']} (newest first)")
    for name, justify in (("id", "right"), ("when (UTC)", "left"), ("state", "left")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("description", overflow="fold")
    for r in rows:
        when = r["created_at"][:19].replace("T", " ")
        table.add_row(str(r["id"]), when, r["state"], r["description"])
    Console(width=120).print(table)


def register(app: typer.Typer) -> None:
    """Add ``undo``, ``redo`` and ``history`` to the ``adtarget`` command."""
    app.command("undo")(undo)
    app.command("redo")(redo)
    app.command("history")(history)
