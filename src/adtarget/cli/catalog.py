"""``adtarget catalog``: create, list, show and change catalog objects from the shell.

Why JSON bodies: the fields are exactly those of the HTTP API (``/work/shared/API.md``), so a
script can move between ``curl`` and the CLI without translating names. Every change goes through
the command layer as the CLI actor (``cli.container.cli_actor``), so ``adtarget undo`` reverses it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

from adtarget.catalog.kinds import EDITABLE, EDITABLE_NAMES, Kind, to_json
from adtarget.catalog.service import create_ad_format, get, list_ad_formats, names_by_id, page
from adtarget.cli import show as display
from adtarget.cli.container import cli_container
from adtarget.cli.errors import fail
from adtarget.cli.fields import fields_table
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.errors import AdtargetError, InvalidValue

catalog_app = typer.Typer(
    help="Catalog objects: advertiser, campaign, line_item, creative, segment, dimension.",
    no_args_is_help=True,
)
KINDS = EDITABLE_NAMES
KindArg = Annotated[str, typer.Argument(help=" | ".join(KINDS))]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _canonical(kind: str) -> str:
    """``line-items`` / ``campaigns`` / ``line_item`` -> ``line_item``."""
    return kind.replace("-", "_").removesuffix("s") if kind not in KINDS else kind


def _kind(kind: str) -> str:
    kind = _canonical(kind)
    if kind not in KINDS:
        raise InvalidValue(f"kind must be one of {', '.join(KINDS)}", field="kind")
    return kind


def _body(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidValue(f"not valid JSON: {exc}", field="body") from None
    if not isinstance(value, dict):
        raise InvalidValue("the body must be a JSON object", field="body")
    return value


def _writer() -> CatalogWriter:
    return cli_container().writer()


def _read(kind: str, obj: Any) -> dict[str, Any]:
    return to_json(obj, kind)


def _names(rows: list[dict[str, Any]]) -> display.Names:
    def lookup(kind: str, ids: Any) -> dict[int, Any]:
        with cli_container().session_factory() as session:
            return names_by_id(session=session, kind=kind, ids=ids)

    return display.collect_names(rows, lookup)


def _print(kind: str, obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(obj))
        return
    display.console().print(display.object_table(kind, obj, _names([obj])))


def _print_list(kind: str, rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"items": rows}))
        return
    if not rows:
        typer.echo(f"no {kind} objects")
        return
    display.console().print(display.objects_table(kind, rows, _names(rows)))


def _run(fn: Any) -> Any:
    try:
        return fn()
    except AdtargetError as err:
        raise fail(err) from None


class _KindGroup(TyperGroup):
    """``catalog create KIND``: one subcommand per kind; plurals and dashes accepted; an unknown
    kind is a usage error listing the kinds (not Click's bare "No such command")."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return super().get_command(ctx, _canonical(cmd_name))

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            ctx.fail(f"unknown kind {args[0]!r}; the kinds are: {', '.join(KINDS)}")
        return super().resolve_command(ctx, args)


class _FieldsCommand(TyperCommand):
    """A ``catalog create KIND`` command whose help ends with the kind's fields table."""

    kind: ClassVar[Kind]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)  # Rich help prints itself; the table follows it
        formatter.write("\n" + fields_table(self.kind, width=max(80, formatter.width or 80)))


create_app = typer.Typer(
    cls=_KindGroup,
    help="Create an object of a kind; 'catalog create KIND --help' lists its fields.",
    no_args_is_help=True,
)
BodyArg = Annotated[
    str,
    typer.Argument(help='JSON object of the fields below, e.g. \'{"name": "Acme"}\'.'),
]


def _add_create(kind: Kind) -> None:
    def create(body: BodyArg, as_json: JsonOpt = False) -> None:
        result = _run(lambda: _writer().create(kind.name, _body(body)))
        _print(kind.name, result, as_json)

    required = ", ".join(kind.required)
    article = "an" if kind.name[0] in "aeiou" else "a"
    create.__doc__ = f"Create {article} {kind.name} (required fields: {required})."
    cls = type(f"Create{kind.name.title()}Command", (_FieldsCommand,), {"kind": kind})
    create_app.command(kind.name, cls=cls)(create)


for _k in EDITABLE:
    _add_create(_k)


@catalog_app.command("update")
def update(
    kind: KindArg,
    obj_id: Annotated[int, typer.Argument(help="Object id")],
    body: Annotated[str, typer.Argument(help="JSON object of changed fields")],
    version: Annotated[int | None, typer.Option(help="Expected version (409 if moved on)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change fields, e.g. catalog update campaign 3 '{"status": "active"}'."""
    result = _run(
        lambda: _writer().update(_kind(kind), obj_id, _body(body), expected_version=version)
    )
    _print(_kind(kind), result, as_json)


@catalog_app.command("attach")
def attach(line_item_id: int, creative_id: int, as_json: JsonOpt = False) -> None:
    """Let a line item show a creative."""
    result = _run(lambda: _writer().attach_creative(line_item_id, creative_id))
    _print("line_item_creative", result if isinstance(result, dict) else {"ok": True}, as_json)


@catalog_app.command("detach")
def detach(line_item_id: int, creative_id: int, as_json: JsonOpt = False) -> None:
    """Stop a line item showing a creative."""
    result = _run(lambda: _writer().detach_creative(line_item_id, creative_id))
    _print("line_item_creative", result if isinstance(result, dict) else {"ok": True}, as_json)


@catalog_app.command("bulk")
def bulk(
    kind: KindArg,
    ids: Annotated[str, typer.Argument(help="Comma-separated ids, e.g. 3,4,5")],
    body: Annotated[str, typer.Argument(help="JSON object of changed fields")],
    as_json: JsonOpt = False,
) -> None:
    """Change many objects as ONE command (one 'adtarget undo' reverses all of them)."""

    def parse() -> list[int]:
        try:
            return [int(t) for t in ids.split(",") if t.strip()]
        except ValueError:
            raise InvalidValue(
                f"ids must be comma-separated integers, got {ids!r}", field="ids"
            ) from None

    results = _run(lambda: _writer().bulk(_kind(kind), parse(), _body(body)))
    _print_list(_kind(kind), results, as_json)


@catalog_app.command("show")
def show(kind: KindArg, obj_id: int, as_json: JsonOpt = False) -> None:
    """Print one object."""

    def read() -> dict[str, Any]:
        k = _kind(kind)
        with cli_container().session_factory() as session:
            return _read(k, get(session=session, kind=k, obj_id=obj_id))

    _print(_kind(kind), _run(read), as_json)


@catalog_app.command("list")
def list_(kind: KindArg, limit: int = 100, as_json: JsonOpt = False) -> None:
    """List objects of a kind (oldest first)."""

    def read() -> list[dict[str, Any]]:
        k = _kind(kind)
        with cli_container().session_factory() as session:
            return [_read(k, r) for r in page(session=session, kind=k, limit=limit)]

    _print_list(_kind(kind), _run(read), as_json)


@catalog_app.command("formats")
def formats(as_json: JsonOpt = False) -> None:
    """List the registry of ad formats (ad types) creatives and line items may use."""

    def read() -> list[dict[str, Any]]:
        with cli_container().session_factory() as session:
            return [_read("ad_format", f) for f in list_ad_formats(session=session)]

    rows = _run(read)
    if as_json:
        typer.echo(json.dumps({"items": rows}))
        return
    for r in rows:
        typer.echo(f"{r['name']:<18} {r['media']:<8} {r['description']}")


@catalog_app.command("add-format")
def add_format(
    name: Annotated[str, typer.Argument(help="e.g. bumper_6s")],
    media: Annotated[str, typer.Option(help="video | display | audio | ...")],
    schema: Annotated[str, typer.Option(help="JSON Schema (object) of the creatives' attributes")],
    description: Annotated[str, typer.Option(help="One line for people")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Register a new ad type: creatives of it are validated against --schema from now on.

    \f
    Why not a command (no undo): formats are referenced by name from creatives and requests, so
    the registry only grows; a format nobody should use is simply not listed in line items.
    """

    def write() -> dict[str, Any]:
        with cli_container().session_factory() as session, session.begin():
            fmt = create_ad_format(
                session=session,
                data={
                    "name": name,
                    "media": media,
                    "description": description,
                    "json_schema": _body(schema),
                },
            )
            return _read("ad_format", fmt)

    _print("ad_format", _run(write), as_json)


def register(app: typer.Typer) -> None:
    """Add ``catalog`` to the ``adtarget`` command."""
    catalog_app.add_typer(create_app, name="create")
    app.add_typer(catalog_app, name="catalog")
