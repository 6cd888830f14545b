"""``adtarget profiles push``: copy the current audience snapshot's user features into Redis.

Why a separate, explicit step: with ``ADTARGET_PROFILE_STORE=redis`` the decision nodes read
per-user features from Redis (one ``HGETALL`` per request) instead of mapping the snapshot files,
which is how decision nodes scale out without shared storage. The snapshot stays the source of
truth; after a publish (or an undo / rollback) this command makes Redis match it, and writes the
snapshot version last so decisions report which snapshot their features came from.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from adtarget.cli.errors import fail
from adtarget.errors import AdtargetError, InvalidValue
from adtarget.settings import get_settings

profiles_app = typer.Typer(
    help="User profiles for decisions: push the snapshot into Redis.", no_args_is_help=True
)


def _push(redis_url: str, prefix: str, quiet: bool) -> dict[str, Any]:
    import redis
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from adtarget.audience.store import SnapshotStore
    from adtarget.decision.profiles import load_snapshot_into_redis

    settings = get_settings()
    snapshot = SnapshotStore(settings.snapshots_dir, keep=settings.snapshots_keep).current()
    if snapshot is None:
        raise InvalidValue(
            "no audience snapshot is published yet: run `adtarget ingest` first", field="snapshot"
        )
    client = redis.Redis.from_url(redis_url)
    bar = Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        disable=quiet,
    )
    with bar:
        task = bar.add_task(f"push {snapshot.version}", total=snapshot.num_ordinals)
        try:
            users = load_snapshot_into_redis(
                snapshot, client, prefix=prefix, progress=lambda n: bar.update(task, completed=n)
            )
        except redis.RedisError as exc:
            raise AdtargetError(f"redis at {redis_url}: {exc}", field="redis_url") from None
        finally:
            client.close()
        bar.update(task, completed=snapshot.num_ordinals)
    return {"snapshot": snapshot.version, "users": users, "redis_url": redis_url, "prefix": prefix}


@profiles_app.command("push")
def push(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    prefix: Annotated[
        str | None, typer.Option(help="Key prefix (default: the one decisions read).")
    ] = None,
) -> None:
    """Copy every user of the current snapshot into Redis (ADTARGET_REDIS_URL)."""
    from adtarget.decision.factory import PROFILE_PREFIX

    settings = get_settings()
    try:
        if not settings.redis_url:
            raise InvalidValue(
                "set ADTARGET_REDIS_URL (e.g. redis://127.0.0.1:6379/0)", field="redis_url"
            )
        result = _push(settings.redis_url, prefix or PROFILE_PREFIX, as_json)
    except AdtargetError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(
            f"pushed {result['users']:,} users of {result['snapshot']} to "
            f"{result['redis_url']} (prefix {result['prefix']})"
        )


def register(app: typer.Typer) -> None:
    """Add ``adtarget profiles`` to the main app."""
    app.add_typer(profiles_app, name="profiles")
