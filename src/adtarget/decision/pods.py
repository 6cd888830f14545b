"""Ad breaks (pods): the rules a break is filled under, and its answer.

Why a separate module: the engine walks candidates in rank order for every request; a pod only
changes *which* candidate may take the next slot and which creative it shows. ``PodFill`` holds
that per-request state and the rules, so the engine adds three calls to its walk and the same
code serves ``POST /v1/decisions``, the request log and the forecast replay.

The rules, for a candidate that matched (separation is checked before the eligibility work,
the creative's duration after it):

- **separation**: no two ads of one advertiser, nor of one competitive category, in a break. A
  line item's category is its campaign's, or else its advertiser's (``decision/loader.py``);
  none means only the advertiser rule applies. A line item serves at most once per break (the
  index yields each line item once).
- **duration**: the creative shown is the lowest-id creative in an accepted format whose
  ``attributes.duration`` fits the seconds left; creatives without a duration never fill a
  slot (reason ``no_duration``), and when none fits the reason is ``duration``. A ``playable``
  break (VAST) takes only creatives with an ``attributes.media_url`` (reason ``no_media``).
- frequency caps are the engine's: every ad of the break counts (``pending``), so a cap of 1
  never serves twice in one break, and all of them are recorded together.

``min_duration`` (documented choice): a floor on the *break's* total, like ``max_duration`` a
ceiling on it. The break is filled greedily in rank order; when that fill ends below the floor
the answer is an empty break (every slot unfilled with reason ``min_duration``) and nothing is
counted against caps: a player that cannot play a break shorter than the floor plays its own
slate instead, and no impression is promised that will not run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

from adtarget.decision.models import LiveLineItem, PodSpec
from adtarget.errors import InvalidValue

MAX_POD_SLOTS = 20
"""The most slots one break may ask for (a long CTV break has 6-10)."""
MAX_POD_SECONDS = 3600.0
"""The longest break, in seconds."""
log = logging.getLogger(__name__)
POD_REASONS = ("no_duration", "no_media", "duration", "separation", "frequency_cap")
"""Why a candidate was skipped while the break still had room (counted for ``unfilled``)."""


def _seconds(value: Any, field: str, *, required: bool) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(f"{field} must be a number of seconds", field=field)
    if not 0 < value <= MAX_POD_SECONDS:
        raise InvalidValue(
            f"{field} must be more than 0 and at most {MAX_POD_SECONDS:g} seconds", field=field
        )
    return float(value)


def media_url(attributes: Mapping[str, Any] | None) -> str | None:
    """The creative's ``attributes.media_url`` when it is a usable one (a non-empty string)."""
    url = (attributes or {}).get("media_url")
    return url if isinstance(url, str) and url else None


def parse_pod(value: Any, *, field: str = "pod") -> PodSpec:
    """A request's ``pod`` object checked; ``InvalidValue`` (422) naming ``pod.slots`` etc."""
    if not isinstance(value, Mapping):
        raise InvalidValue(
            f"{field} must be an object with slots and max_duration (min_duration optional)",
            field=field,
        )
    unknown = sorted(set(value) - {"slots", "max_duration", "min_duration", "playable"})
    if unknown:
        raise InvalidValue(f"{field}.{unknown[0]}: unknown field", field=f"{field}.{unknown[0]}")
    slots = value.get("slots")
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_POD_SLOTS:
        raise InvalidValue(
            f"{field}.slots must be an integer from 1 to {MAX_POD_SLOTS}", field=f"{field}.slots"
        )
    max_duration = _seconds(value.get("max_duration"), f"{field}.max_duration", required=True)
    min_duration = _seconds(value.get("min_duration"), f"{field}.min_duration", required=False)
    assert max_duration is not None  # required=True
    if min_duration is not None and min_duration > max_duration:
        raise InvalidValue(
            f"{field}.min_duration ({min_duration:g}) is more than "
            f"{field}.max_duration ({max_duration:g})",
            field=f"{field}.min_duration",
        )
    playable = value.get("playable", False)
    if not isinstance(playable, bool):
        raise InvalidValue(f"{field}.playable must be true or false", field=f"{field}.playable")
    return PodSpec(slots, max_duration, min_duration, playable)


@lru_cache(maxsize=256)
def replayed_pod(text: str) -> PodSpec | None:
    """The pod of a logged request (its JSON text in the request log), for the forecast replay;
    ``None`` (replayed as a plain request, with a warning) if the stored text is unreadable."""
    try:
        return parse_pod(orjson.loads(text))
    except (orjson.JSONDecodeError, InvalidValue) as exc:
        log.warning("logged pod %r unreadable (%s); replayed as a plain request", text, exc)
        return None


def empty_pod(spec: PodSpec, reason: str, detail: str) -> dict[str, Any]:
    """The ``pod`` of an answer that could not look at any candidate (degraded, late)."""
    return {
        "filled": 0,
        "duration": 0,
        "unfilled": [
            {"slot": s, "reason": reason, "detail": detail} for s in range(1, spec.slots + 1)
        ],
    }


class PodFill:
    """One break being filled: what it holds so far and the rules for the next slot."""

    __slots__ = (
        "spec",
        "duration",
        "advertisers",
        "categories",
        "durations",
        "skipped",
        "short",
    )

    def __init__(self, spec: PodSpec) -> None:
        self.spec = spec
        self.duration = 0.0
        self.advertisers: dict[int, int] = {}  # advertiser id -> line item holding it
        self.categories: dict[str, int] = {}  # category -> line item holding it
        self.durations: dict[int, float] = {}  # line item id -> its creative's seconds
        self.skipped: dict[str, int] = {}  # candidates skipped by a pod rule or a cap
        self.short = False

    @property
    def remaining(self) -> float:
        """Seconds of the break still free."""
        return self.spec.max_duration - self.duration

    def full(self, filled: int) -> bool:
        """No further slot can be filled: every slot taken or no second left."""
        return filled >= self.spec.slots or self.remaining <= 0

    def conflict(self, item: LiveLineItem) -> tuple[str, str] | None:
        """``("separation", detail)`` when an ad of ``item``'s advertiser or competitive
        category is already in the break (checked first: two dict lookups)."""
        holder = self.advertisers.get(item.advertiser_id)
        if holder is not None:
            return self.skip(
                "separation",
                f"advertiser {item.advertiser_id} already in the break (line item {holder})",
            )
        category = item.category
        if category is not None and (holder := self.categories.get(category)) is not None:
            return self.skip(
                "separation", f"category {category!r} already in the break (line item {holder})"
            )
        return None

    def creative(self, item: LiveLineItem, formats: frozenset[str] | None) -> int | tuple[str, str]:
        """The creative ``item`` shows in the next slot (the lowest id in an accepted format
        whose duration fits), or ``(reason, detail)``: ``no_duration``, ``no_media`` (a
        playable break) or ``duration``."""
        best: int | None = None
        shortest = math.inf
        without: list[int] = []
        no_media: list[int] = []
        durations, left = item.durations, self.remaining
        playable, attributes = self.spec.playable, item.attributes
        for fmt, ids in item.creatives.items():
            if formats is not None and fmt not in formats:
                continue
            for cid in ids:
                if playable and media_url(attributes.get(cid)) is None:
                    no_media.append(cid)
                    continue
                seconds = durations.get(cid)
                if seconds is None:
                    without.append(cid)
                    continue
                shortest = min(shortest, seconds)
                if seconds <= left and (best is None or cid < best):
                    best = cid
        if best is not None:
            return best
        if shortest == math.inf and no_media and not without:
            shown = ", ".join(str(c) for c in sorted(no_media)[:5])
            return self.skip("no_media", f"creative {shown} has no attributes.media_url")
        if shortest == math.inf:
            shown = ", ".join(str(c) for c in sorted(without)[:5])
            return self.skip("no_duration", f"creative {shown} has no attributes.duration")
        return self.skip("duration", f"shortest creative {shortest:g}s > {left:g}s left")

    def skip(self, reason: str, detail: str) -> tuple[str, str]:
        """Count a skipped candidate (for ``unfilled``) and hand back its reason."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        return reason, detail

    def add(self, item: LiveLineItem, creative_id: int) -> None:
        """``item`` takes the next slot showing ``creative_id``."""
        seconds = item.durations[creative_id]
        self.duration += seconds
        self.durations[item.id] = seconds
        self.advertisers[item.advertiser_id] = item.id
        if item.category is not None:
            self.categories[item.category] = item.id

    def lost(self, line_item_ids: set[int]) -> bool:
        """Ads that lost their cap race to another process leave the break (their seconds are
        free again); whether what is left falls below ``min_duration`` (then the whole break
        is withdrawn and the caller gives back its counts)."""
        for li_id in line_item_ids:
            self.duration -= self.durations.pop(li_id, 0.0)
            self.skipped["frequency_cap"] = self.skipped.get("frequency_cap", 0) + 1
        if self.durations and self.below_minimum():
            self.short = True
        return self.short

    def below_minimum(self) -> bool:
        """Whether the fill misses ``min_duration`` (the break is then answered empty)."""
        floor = self.spec.min_duration
        return floor is not None and self.duration < floor

    def summary(self, filled: int) -> dict[str, Any]:
        """The answer's ``pod``: ``{"filled", "duration", "unfilled": [{"slot", "reason",
        "detail"}]}``; slots are numbered from 1 in play order."""
        if filled >= self.spec.slots:
            return {"filled": filled, "duration": round(self.duration, 3), "unfilled": []}
        reason, detail = self._unfilled_reason()
        return {
            "filled": filled,
            "duration": round(self.duration, 3) if filled else 0,
            "unfilled": [
                {"slot": slot, "reason": reason, "detail": detail}
                for slot in range(filled + 1, self.spec.slots + 1)
            ],
        }

    def _unfilled_reason(self) -> tuple[str, str]:
        spec = self.spec
        if self.short:
            return (
                "min_duration",
                f"the fill reached {self.duration:g}s of the {spec.min_duration:g}s minimum",
            )
        if self.remaining <= 0:
            return "duration", f"max_duration {spec.max_duration:g}s used up"
        if self.skipped:
            top = max(self.skipped, key=lambda r: (self.skipped[r], -POD_REASONS.index(r)))
            counts = ", ".join(f"{r} {n}" for r, n in sorted(self.skipped.items()))
            total = sum(self.skipped.values())
            left = self.remaining
            return top, f"{total} matching line item(s) skipped ({counts}); {left:g}s left"
        return "no_candidate", "no other line item matched and was eligible"
