"""``adtarget size | overlap | export`` and ``adtarget snapshots list | rollback``.

Why these read the snapshot directly (no server): sizing is a memory-mapped read of the current
snapshot, so a data engineer gets the same exact answer from the shell as the API gives.
Exit codes: 0 ok, 2 for a rule that does not parse or validate (message on stderr), 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypedDict

import typer
from rich.console import Console
from rich.table import Table

from adtarget.audience.service import current_snapshot, export_rule, overlap_rules, size_rule
from adtarget.audience.sharded import AnySnapshot
from adtarget.audience.store import SnapshotStore
from adtarget.catalog.checks import segment_rules
from adtarget.catalog.service import dimension_registry
from adtarget.cli.container import cli_container
from adtarget.errors import AdtargetError, InvalidValue, RuleSyntaxError
from adtarget.rules.ast import Rule
from adtarget.rules.registry import DimensionSpec

snapshots_app = typer.Typer(
    help="List kept audience snapshots or roll back to one.", no_args_is_help=True
)


def _fail(err: AdtargetError) -> typer.Exit:
    where = ""
    if isinstance(err, RuleSyntaxError):
        where = f" (line {err.line}, column {err.column})"
    typer.echo(f"error: {err.message}{where}", err=True)
    return typer.Exit(2 if isinstance(err, InvalidValue) else 1)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except AdtargetError as err:
        raise _fail(err) from None


def _store() -> SnapshotStore:
    return cli_container().snapshot_store


class SizingContext(TypedDict):
    """What ``size``, ``overlap`` and ``export`` take besides the rule."""

    snapshot: AnySnapshot
    registry: dict[str, DimensionSpec]
    segments: dict[str, Rule | None]
    min_size: int


def sizing_context() -> SizingContext:
    """Snapshot, catalog registry and segments, and the minimum audience size."""

    container = cli_container()
    settings = container.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    snapshot = current_snapshot(_store())
    with container.session_factory() as session:
        registry = dimension_registry(session=session)
        segments = segment_rules(session=session)
    return {
        "snapshot": snapshot,
        "registry": registry,
        "segments": segments,
        "min_size": settings.min_audience_size,
    }


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def size(
    rule: Annotated[str, typer.Argument(help="Rule text, e.g. 'country in (\"US\") and age > 30'")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Exact number of users matching RULE on the current snapshot."""

    with _errors():
        result = size_rule(rule_text=rule, **sizing_context())
    if as_json:
        _print_json(result)
    elif result["count"] is None:
        typer.echo(
            f"below the minimum audience size of {result['min_size']} users "
            f"(ADTARGET_MIN_AUDIENCE_SIZE; snapshot {result['snapshot']})"
        )
    else:
        typer.echo(f"{result['count']:,} users (snapshot {result['snapshot']})")


def overlap(
    rules: Annotated[list[str], typer.Argument(help="Two or more rules.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Pairwise overlap (intersection sizes) of any number of rules."""

    with _errors():
        result = overlap_rules(rules=rules, **sizing_context())
    if as_json:
        _print_json(result)
        return
    table = Table(
        title=f"overlap (snapshot {result['snapshot']}; - = below {result['min_size']} users, "
        "ADTARGET_MIN_AUDIENCE_SIZE)"
    )
    table.add_column("#")
    table.add_column("rule")
    for i in range(len(rules)):
        table.add_column(str(i + 1), justify="right")
    for i, (text, row) in enumerate(zip(rules, result["matrix"], strict=True)):
        table.add_row(str(i + 1), text, *("-" if c is None else f"{c:,}" for c in row))
    Console().print(table)


def export(
    rule: Annotated[str, typer.Argument(help="Rule text.")],
    out: Annotated[str, typer.Option("--out", help="File to write: a path or s3://bucket/key.")],
    fmt: Annotated[str, typer.Option("--format", help="csv | parquet")] = "csv",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Write the ids of users matching RULE to a CSV or Parquet file."""

    with _errors():
        if fmt not in ("csv", "parquet"):
            raise InvalidValue(f"--format must be csv or parquet, not {fmt!r}", field="format")
        result = export_rule(rule_text=rule, out_path=out, fmt=fmt, **sizing_context())  # type: ignore[arg-type]
    if as_json:
        _print_json(result)
    else:
        typer.echo(
            f"wrote {result['count']:,} user ids to {result['path']} "
            f"(snapshot {result['snapshot']})"
        )


@snapshots_app.command("list")
def list_snapshots(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Kept snapshots, newest first; the current one is marked."""
    store = _store()
    rows = store.manifests()[::-1]
    if as_json:
        _print_json({"current": store.current_version(), "snapshots": rows})
        return
    table = Table(title="audience snapshots")
    for col in ("", "version", "created_at", "users", "segments"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            "*" if r["current"] else "",
            r["version"],
            str(r["created_at"]),
            f"{r['num_users']:,}",
            ", ".join(r["segments"]),
        )
    Console().print(table)


@snapshots_app.command("rollback")
def rollback(
    version: Annotated[str, typer.Argument(help="Version to serve again, e.g. v000003.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Serve an older kept snapshot again (every reader picks it up on its next call)."""
    with _errors():
        current = _store().rollback(version)
    if as_json:
        _print_json({"current": current})
    else:
        typer.echo(f"now serving {current}")


def register(app: typer.Typer) -> None:
    """Add the audience commands to the main ``adtarget`` app."""
    app.command("size")(size)
    app.command("overlap")(overlap)
    app.command("export")(export)
    app.add_typer(snapshots_app, name="snapshots")
