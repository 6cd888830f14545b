"""``adtarget profiles push``: copy the current audience snapshot's user features into Redis.

Why this step: with ``ADTARGET_PROFILE_STORE=redis`` the decision nodes read per-user features
from Redis (one ``HGETALL`` per request) instead of mapping the snapshot files, which is how
decision nodes scale out without shared storage. The snapshot stays the source of truth; this
command makes Redis match it: the users are written under the snapshot's version and made live
in one step (``audience/redis_profiles.py``); a version still in Redis (after an undo or a
rollback) is made live again without rewriting it.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from adtarget.audience.redis_profiles import push_current_profiles
from adtarget.audience.store import SnapshotStore
from adtarget.cli.container import cli_container
from adtarget.cli.errors import fail
from adtarget.errors import AdtargetError, InvalidValue

profiles_app = typer.Typer(
    help="User profiles for decisions: push the snapshot into Redis.", no_args_is_help=True
)


def _push(redis_url: str, prefix: str, quiet: bool) -> dict[str, Any]:

    settings = cli_container().settings
    store = SnapshotStore(settings.snapshots_dir, keep=settings.snapshots_keep)
    snapshot = store.current()
    bar = Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        disable=quiet,
    )
    with bar:
        task = bar.add_task(
            f"push {snapshot.version if snapshot else '-'}",
            total=snapshot.num_ordinals if snapshot else 0,
        )
        load = push_current_profiles(
            store,
            redis_url,
            prefix=prefix,
            progress=lambda n: bar.update(task, completed=n),
            cluster=settings.redis_cluster,
        )
        bar.update(task, completed=snapshot.num_ordinals if snapshot else 0)
    return {
        "snapshot": load.version,
        "users": load.users,
        "repointed": load.repointed,
        "redis_url": redis_url,
        "prefix": prefix,
    }


@profiles_app.command("push")
def push(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    prefix: Annotated[
        str | None,
        typer.Option(
            help="Key prefix (default: ADTARGET_REDIS_PROFILE_PREFIX, the one decisions read)."
        ),
    ] = None,
) -> None:
    """Copy every user of the current snapshot into Redis (ADTARGET_REDIS_URL)."""
    settings = cli_container().settings
    try:
        if not settings.redis_url:
            raise InvalidValue(
                "set ADTARGET_REDIS_URL (e.g. redis://127.0.0.1:6379/0)", field="redis_url"
            )
        result = _push(settings.redis_url, prefix or settings.redis_profile_prefix, as_json)
    except AdtargetError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(result))
    else:
        how = "already in Redis, now live:" if result["repointed"] else "pushed"
        typer.echo(
            f"{how} {result['users']:,} users of {result['snapshot']} to "
            f"{result['redis_url']} (prefix {result['prefix']})"
        )


def register(app: typer.Typer) -> None:
    """Add ``adtarget profiles`` to the main app."""
    app.add_typer(profiles_app, name="profiles")
