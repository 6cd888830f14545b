"""Answer shapes of the routes whose models live in the server (``api``), for the client.

The catalog's own models (``adtarget.catalog.models``: ``AdvertiserCreate``, ``CampaignRead``,
...) are reused as they are; these cover the other answers, from ``/work/shared/API.md``. They
allow extra keys: the API may add fields (the contract says so) and an older client must keep
working.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Page(_Open, Generic[T]):
    """One page of a catalog list; ``next_after`` is the cursor of the next (``None``: last)."""

    items: list[T]
    next_after: int | None = None


class SizeResult(_Open):
    """``POST /v1/audiences/size``: ``count`` is ``None`` below the minimum audience size."""

    count: int | None
    snapshot: str | None = None
    below_threshold: bool = False


class Decision(_Open):
    """One ranked ad of ``POST /v1/decisions``."""

    line_item_id: int
    campaign_id: int
    creative_id: int
    priority: int
    bid_cpm: float


class UnfilledSlot(_Open):
    """A slot of an ad break left empty, and why (``docs/pods.md``)."""

    slot: int
    reason: str
    detail: str = ""


class PodAnswer(_Open):
    """How an ad break was filled: ``filled`` slots, their total ``duration`` in seconds."""

    filled: int
    duration: float
    unfilled: list[UnfilledSlot] = Field(default_factory=list)


class DecisionResult(_Open):
    """``POST /v1/decisions``; ``pod`` is set when the request asked for an ad break."""

    decisions: list[Decision]
    snapshot: str | None = None
    degraded: bool = False
    pod: PodAnswer | None = None


class Rejected(_Open):
    """A refused event or update, by its index in the batch."""

    index: int
    reason: str
    field: str | None = None


class BatchResult(_Open):
    """``POST /v1/events`` and ``POST /v1/profiles/updates``."""

    accepted: int
    duplicates: int = 0
    rejected: list[Rejected] = Field(default_factory=list)


class Report(_Open):
    """``GET /v1/reports``: one dict per row (group-by columns, then metrics)."""

    rows: list[dict[str, Any]]


class UploadJob(_Open):
    """An upload job (``POST /v1/uploads``, ``GET /v1/uploads/{id}``)."""

    id: str
    status: str
    rows_read: int | None = None
    rows_accepted: int | None = None
    rows_rejected: int | None = None
    quarantine: str | None = None
    snapshot: str | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        """True once the job succeeded or failed."""
        return self.status in ("succeeded", "failed")


class CommandStep(_Open):
    """``POST /v1/commands/undo`` / ``redo``: what was undone or redone."""

    command_id: int
    description: str
    note: str | None = None


class HistoryItem(_Open):
    """One entry of ``GET /v1/commands``."""

    id: int
    kind: str
    description: str
    state: str
    created_at: str
    undone_at: str | None = None
    actor: str | None = None
