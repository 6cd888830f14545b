"""``adtarget.client``: a typed Python client for adtarget's HTTP API (sync and async).

It reuses the package's own pydantic models (``adtarget.catalog.models``: ``CampaignCreate``
in, ``CampaignRead`` out), raises the package's own typed errors from the error body
(``NotFound``, ``Conflict``, ``NothingToUndo``, ``InvalidValue``, ``RuleSyntaxError``, ... each
with ``.message``, ``.field`` and ``.status``), retries idempotent calls with backoff
(tenacity), and pages through lists (``iter``). See ``docs/client.md``.
"""

from __future__ import annotations

from adtarget.client.aio import AsyncClient, AsyncResource
from adtarget.client.models import (
    BatchResult,
    CommandStep,
    Decision,
    DecisionResult,
    HistoryItem,
    Page,
    PodAnswer,
    Report,
    SizeResult,
    UnfilledSlot,
    UploadJob,
)
from adtarget.client.sync import Client, Resource
from adtarget.errors import (
    AdtargetError,
    Conflict,
    Forbidden,
    InvalidValue,
    NotFound,
    NothingToRedo,
    NothingToUndo,
    Unauthorized,
)

__all__ = [
    "AdtargetError",
    "AsyncClient",
    "AsyncResource",
    "BatchResult",
    "Client",
    "CommandStep",
    "Conflict",
    "Decision",
    "DecisionResult",
    "Forbidden",
    "HistoryItem",
    "InvalidValue",
    "NotFound",
    "NothingToRedo",
    "NothingToUndo",
    "Page",
    "PodAnswer",
    "Report",
    "Resource",
    "SizeResult",
    "Unauthorized",
    "UnfilledSlot",
    "UploadJob",
]
