"""``adtarget keys create|list|revoke``: API keys, stored as SHA-256, shown once at creation."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from adtarget.api.auth import create_key, key_to_dict, list_keys, revoke_key
from adtarget.cli.container import cli_container
from adtarget.cli.errors import fail
from adtarget.errors import AdtargetError

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


def _fail(err: AdtargetError) -> None:
    raise fail(err)


@keys_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="admin | advertiser | reader | decisions")],
    advertiser: Annotated[
        int | None, typer.Option("--advertiser", help="Advertiser id (advertiser keys only).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label to tell keys apart.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    factory = cli_container().session_factory
    try:
        with factory() as session, session.begin():
            row, key = create_key(session=session, role=role, advertiser_id=advertiser, name=name)
            info = key_to_dict(row)
    except AdtargetError as err:
        _fail(err)
        return
    if as_json:
        typer.echo(json.dumps({**info, "key": key}))
        return
    typer.echo(key)
    typer.echo(f"key {info['id']} ({role}) created; store it now, it is not shown again.", err=True)


@keys_app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List keys (id, prefix, role, advertiser); never the keys themselves."""
    factory = cli_container().session_factory
    with factory() as session:
        rows = [key_to_dict(r) for r in list_keys(session=session, include_revoked=all_)]
    if as_json:
        typer.echo(json.dumps({"keys": rows}))
        return
    if not rows:
        typer.echo("no API keys: the API runs open on loopback only")
        return
    for r in rows:
        revoked = f"  revoked {r['revoked_at']}" if r["revoked_at"] else ""
        adv = f"  advertiser {r['advertiser_id']}" if r["advertiser_id"] is not None else ""
        typer.echo(f"{r['id']:>4}  {r['prefix']}…  {r['role']:<10}{adv}  {r['name']}{revoked}")


@keys_app.command("revoke")
def revoke(key_id: Annotated[int, typer.Argument(help="The key id (see `keys list`).")]) -> None:
    """Revoke a key; every worker stops accepting it within a few seconds."""
    factory = cli_container().session_factory
    try:
        with factory() as session, session.begin():
            revoke_key(session=session, key_id=key_id)
    except AdtargetError as err:
        _fail(err)
        return
    typer.echo(f"key {key_id} revoked")


def register(app: typer.Typer) -> None:
    """Add ``keys`` to the ``adtarget`` command."""
    app.add_typer(keys_app, name="keys")
