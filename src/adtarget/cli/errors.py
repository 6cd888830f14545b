"""How every ``adtarget`` subcommand reports an ``AdtargetError``: one line on stderr.

Why one place: scripts grep these lines, so the shape (``error: <message> (<field>)``) must not
drift between subcommands; each subcommand still picks its own exit code.
"""

from __future__ import annotations

import typer

from adtarget.errors import AdtargetError


def fail(err: AdtargetError, code: int = 1) -> typer.Exit:
    """Print ``error: message (field)`` on stderr; returns the ``Exit`` for the caller to raise."""
    typer.echo(f"error: {err.message}" + (f" ({err.field})" if err.field else ""), err=True)
    return typer.Exit(code)
