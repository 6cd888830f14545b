"""``/v1/commands``: the caller's command history, undo and redo (API.md).

Each call acts on the history of the caller's actor only (``ActorDep``), so one key's undo
never reverses another key's change. Nothing to undo/redo and refused undos (the row was
changed since) are 409 with ``{"error": {...}}``, rendered by the app's one error handler.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from adtarget.api.deps import ActorDep, ContainerDep, allow
from adtarget.commands.catalog_commands import CatalogWriter

#: Readers may see their (empty) history; only roles that change the catalog undo/redo.
router = APIRouter(
    prefix="/v1/commands",
    tags=["commands"],
    dependencies=[Depends(allow(read=("reader", "advertiser"), write=("advertiser",)))],
)


def command_writer(container: ContainerDep, actor: ActorDep) -> CatalogWriter:
    """Dependency: the caller's ``CatalogWriter`` (history depth from settings)."""
    settings = container.settings
    return CatalogWriter(
        container.session_factory,
        actor=actor,
        depth=settings.history_depth,
        settings=settings,
        spend_totals=container.spend_totals,
    )


WriterDep = Annotated[CatalogWriter, Depends(command_writer)]


@router.post("/undo", summary="Undo your most recent catalog change (409 when nothing/conflict)")
def undo(writer: WriterDep) -> dict[str, Any]:
    """Undo the caller's newest command.

    ``{"command_id", "description", "undone": <history entry>, "result": {"rows": [...]}}``, plus
    ``note`` and ``served`` when a line item it touched already has delivery recorded.
    """
    return writer.undo()


@router.post("/redo", summary="Redo your most recently undone change (409 when nothing/conflict)")
def redo(writer: WriterDep) -> dict[str, Any]:
    """Redo the caller's most recently undone command."""
    return writer.redo()


@router.get("", summary="Your command history, newest first")
def history(writer: WriterDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
    """``{"commands": [{"id", "kind", "description", "state", "created_at", "actor"}, ...]}``."""
    return {"commands": writer.history(limit)}
