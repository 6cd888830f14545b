"""``adtarget plan | apply | export-catalog``: the catalog kept as a YAML file (in Git).

``plan -f FILE`` shows what ``apply`` would change, field by field, by running the apply in a
transaction that is rolled back, so every error the apply would hit shows at plan time.
``apply -f FILE`` applies it as one command of the CLI actor: ``adtarget undo`` reverses the
whole apply. ``export-catalog`` writes the current catalog in the same format. The format and
its rules: ``docs/catalog-as-code.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from adtarget.catalog.export import export_document
from adtarget.catalog.spec import dump_yaml, parse_document, read_document
from adtarget.cli.container import cli_container
from adtarget.cli.errors import fail
from adtarget.commands.apply_catalog import ApplyCatalog, check_apply
from adtarget.errors import AdtargetError

FileOpt = Annotated[
    Path, typer.Option("--file", "-f", help="The catalog YAML file.", show_default=False)
]
ArchiveOpt = Annotated[
    bool,
    typer.Option(
        "--archive/--no-archive",
        help="Archive advertisers, campaigns, line items, creatives and rule segments the file "
        "does not declare (the file is the whole catalog).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
MARK = {"create": ("+", "green"), "update": ("~", "yellow"), "archive": ("-", "red")}


def _command(path: Path, archive: bool) -> ApplyCatalog:
    document = read_document(path)
    parse_document(document, source=str(path))  # file and field errors before the database
    return ApplyCatalog(document=document, source=str(path), archive=archive)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def print_plan(plan: dict[str, Any], *, applied: bool) -> None:
    """The plan for people: one line per step, fields indented below it."""

    console = Console(highlight=False)
    if not plan["actions"]:
        console.print(f"{plan['file']}: the catalog already matches; nothing to change.")
        return
    for action in plan["actions"]:
        label = f"{action['kind']} {escape(repr(' / '.join(action['path'])))}"
        if action["op"] in ("attach", "detach"):
            sign, colour = ("+", "green") if action["op"] == "attach" else ("-", "red")
            creative = escape(repr(" / ".join(action["creative"])))
            word = "to" if action["op"] == "attach" else "from"
            console.print(f"[{colour}]{sign} {action['op']} creative {creative} {word} {label}[/]")
            continue
        sign, colour = MARK[action["op"]]
        ident = f" (id {action['id']})" if "id" in action else ""
        console.print(f"[{colour}]{sign} {action['op']} {label}{ident}[/]")
        if action["op"] == "archive":
            continue
        for name, change in (action.get("changes") or {}).items():
            new = escape(_show(change["new"]))
            if action["op"] == "create":
                console.print(f"    {name}: {new}")
            else:
                console.print(f"    {name}: {escape(_show(change['old']))} -> {new}")
    s = plan["summary"]
    verb = "Applied" if applied else "Plan"
    links = s["attach"] + s["detach"]
    console.print(
        f"\n[bold]{verb}:[/] {s['create']} to create, {s['update']} to update, "
        f"{s['archive']} to archive, {links} link change{'s' * (links != 1)}."
        + ("" if applied else "  Run [bold]adtarget apply -f FILE[/] to apply it.")
    )


def plan(file: FileOpt, archive: ArchiveOpt = True, as_json: JsonOpt = False) -> None:
    """Show what 'apply -f FILE' would change (create / update / archive, field by field)."""

    container = cli_container()
    try:
        result = check_apply(
            container.session_factory,
            _command(file, archive),
            actor=container.actor,
            settings=container.settings,
        )
    except AdtargetError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(result["plan"]))
        return
    print_plan(result["plan"], applied=False)


def apply(file: FileOpt, archive: ArchiveOpt = True, as_json: JsonOpt = False) -> None:
    """Apply a catalog file as ONE command: all or nothing; 'adtarget undo' reverses it."""
    try:
        result = cli_container().writer().execute(_command(file, archive))
    except AdtargetError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(result))
        return
    print_plan(result["plan"], applied=True)
    if result["plan"]["actions"]:
        typer.echo("One `adtarget undo` reverses this whole apply.")


def export_catalog(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write the current catalog (archived objects left out) in the 'apply -f' format."""

    try:
        with cli_container().session_factory() as session:
            text = dump_yaml(export_document(session))
    except AdtargetError as err:
        raise fail(err) from None
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``plan``, ``apply`` and ``export-catalog`` to the ``adtarget`` command."""
    app.command("plan")(plan)
    app.command("apply")(apply)
    app.command("export-catalog")(export_catalog)
