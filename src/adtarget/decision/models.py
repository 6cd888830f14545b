"""Value objects of the decision path: the live line items the index holds, requests and answers.

Why frozen dataclasses and not ORM rows: the index is shared by every request thread and swapped
as one reference, so what it holds must be immutable and detached from any database session.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from adtarget.rules.ast import Rule

PacingMode = Literal["even", "asap"]
CapLevel = Literal["line_item", "campaign", "advertiser"]

#: Reasons a line item did not serve (``explain``), in check order: the first three come from
#: the catalog (outside the live set), the rest from the request.
REASONS: tuple[str, ...] = (
    "status",
    "no_creative",
    "invalid",
    "targeting",
    "flight",
    "daypart",
    "budget",
    "pacing",
    "format",
    "no_duration",
    "no_media",
    "duration",
    "separation",
    "frequency_cap",
    "rank",
)


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most ``count`` impressions per user per fixed window of ``window_seconds``."""

    level: CapLevel
    owner_id: int
    count: int
    window_seconds: int


@dataclass(frozen=True, slots=True)
class LiveLineItem:
    """One servable line item with everything eligibility needs, denormalised from the catalog.

    ``creatives`` maps an ad format to the ids of approved, active creatives in that format
    (ascending, so the choice of creative is deterministic).
    """

    id: int
    campaign_id: int
    advertiser_id: int
    priority: int
    bid_cpm: float
    rule: Rule | None
    formats: tuple[str, ...] = ()
    creatives: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    caps: tuple[FrequencyCap, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    campaign_start: datetime | None = None
    campaign_end: datetime | None = None
    budget_total: float | None = None
    campaign_budget_total: float | None = None
    campaign_budget_daily: float | None = None
    pacing_mode: PacingMode = "even"
    """Pacing of the line item's own budget."""
    campaign_pacing_mode: PacingMode = "even"
    """Pacing of the campaign's total and daily budgets (the campaign's own setting)."""
    timezone: str = "UTC"
    dayparting: frozenset[int] | None = None
    """Allowed hours of the week (0 = Monday 00:00-00:59 local time); ``None`` = always."""
    category: str | None = None
    """Competitive category: the campaign's, else the advertiser's (ad pods keep one of each)."""
    durations: Mapping[int, float] = field(default_factory=dict)
    """Creative id → ``attributes.duration`` in seconds, for creatives that have a usable one
    (a positive number); only these can fill a pod slot."""
    attributes: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    """Creative id → its ``attributes`` as registered (media URL, duration, ...), for the
    playable answer; shared between line items with the same creative, never mutated."""

    def rank_key(self) -> tuple[int, float, int]:
        """Priority ascending (1 first), bid CPM descending, id ascending."""
        return (self.priority, -self.bid_cpm, self.id)

    def format_of(self, creative_id: int) -> str:
        """The ad format ``creative_id`` is registered in (one of ``creatives``' keys)."""
        for fmt, ids in self.creatives.items():
            if creative_id in ids:
                return fmt
        return ""


@dataclass(frozen=True, slots=True)
class PodSpec:
    """An ad break: up to ``slots`` ads whose creatives' durations sum to at most
    ``max_duration`` seconds, and (when set) at least ``min_duration`` or nothing at all
    (``decision/pods.py`` checks the values and fills the break)."""

    slots: int
    max_duration: float
    min_duration: float | None = None
    playable: bool = False
    """Only creatives a player can play fill it: those with an ``attributes.media_url`` (a VAST
    break, ``GET /v1/vast``, sets it, so no slot goes to an ad it would have to leave out)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the request's ``pod`` (also what the request log stores)."""
        out: dict[str, Any] = {"slots": self.slots, "max_duration": self.max_duration}
        if self.min_duration is not None:
            out["min_duration"] = self.min_duration
        if self.playable:
            out["playable"] = True
        return out


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """One ad request: who, in which context, how many answers, which ad formats fit the slot.

    With ``pod`` the answer is an ad break of up to ``pod.slots`` ads and ``limit`` is unused.
    """

    user_id: str
    context: Mapping[str, Any] = field(default_factory=dict)
    limit: int = 1
    formats: tuple[str, ...] | None = None
    explain: bool = False
    pod: PodSpec | None = None

    def __post_init__(self) -> None:
        if self.formats is not None:
            object.__setattr__(self, "formats", tuple(self.formats))


NO_ATTRIBUTES: Mapping[str, Any] = {}


_ID_BATCH = 256
_ids: list[str] = []
os.register_at_fork(after_in_child=_ids.clear)  # a forked worker must not reuse the parent's


def new_decision_id() -> str:
    """A unique, unguessable id for one served ad (its beacons are deduplicated by it): 96 bits
    from ``os.urandom``, drawn 256 ids at a time.

    Why batches: one ``getrandom`` call per ad was 1.5-2.6 % of a decision worker's profile
    (1.8 µs per id on this box). ``list.pop`` is atomic, so threads never share an id; the
    batch left in a parent is dropped in a forked child.
    """
    try:
        return _ids.pop()
    except IndexError:
        raw = os.urandom(12 * _ID_BATCH).hex()
        _ids.extend(raw[i : i + 24] for i in range(24, len(raw), 24))
        return raw[:24]


@dataclass(frozen=True, slots=True)
class Decision:
    """One served line item, the creative chosen for it, and what makes the answer playable:
    ``decision_id`` (the key its beacons are deduplicated by), the creative's format and
    registered attributes. The API adds signed ``tracking`` URLs (``delivery/beacons.py``)."""

    line_item_id: int
    campaign_id: int
    creative_id: int
    priority: int
    bid_cpm: float
    decision_id: str = ""
    advertiser_id: int = 0
    creative_format: str = ""
    creative_attributes: Mapping[str, Any] = field(default_factory=lambda: NO_ATTRIBUTES)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``API.md``'s ``decisions[]`` element."""
        return {
            "decision_id": self.decision_id,
            "line_item_id": self.line_item_id,
            "campaign_id": self.campaign_id,
            "creative_id": self.creative_id,
            "priority": self.priority,
            "bid_cpm": self.bid_cpm,
            "creative": {
                "id": self.creative_id,
                "format": self.creative_format,
                "attributes": self.creative_attributes,
            },
        }


@dataclass(frozen=True, slots=True)
class DecisionResult:
    """The answer: ranked decisions, the snapshot the features came from, and whether degraded.

    ``explain`` (only when asked) is ``{"not_served": [{"line_item_id", "reason", "detail"}]}``.
    """

    decisions: list[Decision]
    snapshot: str | None
    degraded: bool = False
    explain: dict[str, Any] | None = None
    pod: dict[str, Any] | None = None
    """For an ad break: ``{"filled", "duration", "unfilled": [{"slot", "reason", "detail"}]}``."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/decisions``."""
        body: dict[str, Any] = {
            "decisions": [d.to_dict() for d in self.decisions],
            "snapshot": self.snapshot,
            "degraded": self.degraded,
        }
        if self.pod is not None:
            body["pod"] = self.pod
        if self.explain is not None:
            body["explain"] = self.explain
        return body
