"""The line item a forecast is about: a proposal from its fields, or a catalog one with changes.

Why the engine's own ``LiveLineItem``: the replay puts the proposal in a real ``LineItemIndex``
beside the live line items, so it must be built exactly as the loader builds them (caps from the
line item, campaign and advertiser; flights; budgets; the campaign's time zone and dayparting),
with its rule parsed, validated against the dimension registry and its rule segments inlined.
A proposal has no creatives yet: it is given a placeholder creative (id 0) in each of its
formats, or in every format the catalog knows when it names none; ``creative_duration`` gives
that creative a duration, so the proposal can fill slots of logged ad breaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from adtarget.catalog.checks import compile_targeting, segment_rules
from adtarget.catalog.models import MAX_INT32, Bid, FrequencyCap, Id, Money, PacingMode, Priority
from adtarget.catalog.models import UTCDatetime as UTCDatetimeIn
from adtarget.catalog.service import find, max_id
from adtarget.decision.eligibility import parse_dayparting
from adtarget.decision.models import FrequencyCap as Cap
from adtarget.decision.models import LiveLineItem
from adtarget.errors import InvalidValue, NotFound
from adtarget.rules.format import from_json
from adtarget.rules.validate import expand_segments

PLACEHOLDER_CREATIVE = 0


class ProposalChanges(BaseModel):
    """Fields of a proposed line item (all optional: the changes to an existing one)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    campaign_id: Id | None = None
    targeting: str | None = Field(default=None, max_length=20_000)
    start: UTCDatetimeIn | None = None
    end: UTCDatetimeIn | None = None
    priority: Priority | None = None
    bid_cpm: Bid | None = None
    frequency_cap: FrequencyCap | None = None
    formats: list[str] | None = None
    budget: Money | None = None
    pacing_mode: PacingMode | None = None
    creative_duration: float | None = Field(default=None, gt=0, le=3600)
    """Seconds of the creative it will run: without one the proposal fills no ad-break slot
    (a break adds up creative durations, ``decision/pods.py``)."""


class Proposal(ProposalChanges):
    """A line item not in the catalog: ``targeting``, ``start``, ``end``, ``priority`` and
    ``bid_cpm`` as ``API.md`` names them, the rest optional."""

    targeting: str = Field(default="", max_length=20_000)
    start: UTCDatetimeIn
    end: UTCDatetimeIn
    priority: Priority = 8
    bid_cpm: Bid


def _validated(model: type[BaseModel], body: Any, prefix: str) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidValue(f"{where}: {err['msg']}", field=prefix + where) from None


def _caps(li_id: int, cap: FrequencyCap | None, campaign: Any) -> tuple[Cap, ...]:
    out = []
    if cap is not None:
        out.append(Cap("line_item", li_id, cap.count, cap.window_seconds))
    if campaign is not None:
        adv = campaign.advertiser
        for level, owner, count, window in (
            ("campaign", campaign.id, campaign.frequency_cap_count,
             campaign.frequency_cap_window_seconds),
            ("advertiser", adv.id, adv.frequency_cap_count, adv.frequency_cap_window_seconds),
        ):  # fmt: skip
            if count and window:
                out.append(Cap(level, owner, int(count), int(window)))  # type: ignore[arg-type]
    return tuple(out)


def _f(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _creatives(formats: Iterable[str]) -> dict[str, tuple[int, ...]]:
    return {fmt: (PLACEHOLDER_CREATIVE,) for fmt in formats}


def build_proposal(
    body: Any,
    *,
    session: Session,
    known_formats: Iterable[str],
    hidden: frozenset[str] = frozenset(),
) -> LiveLineItem:
    """The ``LiveLineItem`` a forecast body describes (``POST /v1/forecast``).

    ``{"line_item_id": ID, "changes": {...}}`` starts from that catalog line item (any status)
    and applies the changes; anything else is a proposal. Errors name the field.

    ``hidden``: segments the caller may not see. They are left out when *this* rule (the one
    the forecast replays, after changes are merged) is compiled, so naming one answers as a
    missing segment does: authorization on the very rule used, never on a second parse.

    Raises:
        InvalidValue: a field that does not validate (422); NotFound: an unknown id.
    """
    if not isinstance(body, dict):
        raise InvalidValue("the body must be a JSON object", field="body")
    if "line_item_id" in body:
        extra = set(body) - {"line_item_id", "changes"}
        if extra:
            raise InvalidValue(
                f"unknown field {sorted(extra)[0]!r} beside line_item_id", field=sorted(extra)[0]
            )
        li_id = body["line_item_id"]
        if isinstance(li_id, bool) or not isinstance(li_id, int) or not 1 <= li_id <= MAX_INT32:
            raise InvalidValue(
                f"line_item_id must be an integer from 1 to {MAX_INT32}", field="line_item_id"
            )
        raw = body.get("changes", {})
        if not isinstance(raw, dict):  # `[]` or `null` is not "no changes": say so
            raise InvalidValue(
                "changes must be an object of line item fields (omit it for no changes)",
                field="changes",
            )
        changes = _validated(ProposalChanges, raw, "changes.")
        row = find(session=session, kind="line_item", obj_id=li_id)
        if row is None:
            raise NotFound(f"line item {li_id} not found", field="line_item_id")
        field = "changes.targeting" if "targeting" in changes.model_fields_set else "targeting"
        return _from_row(
            row, changes, session=session, known_formats=known_formats, hidden=hidden, field=field
        )
    spec = _validated(Proposal, body, "")
    next_id = max_id(session=session, kind="line_item") + 1
    return _assemble(
        next_id, spec, None, session=session, known_formats=known_formats, hidden=hidden
    )


def _from_row(
    row: Any,
    changes: ProposalChanges,
    *,
    session: Session,
    known_formats: Iterable[str],
    hidden: frozenset[str],
    field: str,
) -> LiveLineItem:
    cap = None
    if row.frequency_cap_count and row.frequency_cap_window_seconds:
        cap = FrequencyCap(count=row.frequency_cap_count,
                           window_seconds=row.frequency_cap_window_seconds)  # fmt: skip
    merged = ProposalChanges(
        campaign_id=row.campaign_id,
        targeting=row.targeting,
        start=row.start,
        end=row.end,
        priority=row.priority,
        bid_cpm=row.bid_cpm,
        frequency_cap=cap,
        formats=list(row.formats or []),
        budget=row.budget_total,
        pacing_mode=row.pacing_mode,
    ).model_copy(update=changes.model_dump(exclude_unset=True))
    if merged.campaign_id != row.campaign_id:
        raise InvalidValue(
            "a line item cannot move to another campaign", field="changes.campaign_id"
        )
    return _assemble(
        row.id,
        merged,
        row.campaign,
        session=session,
        known_formats=known_formats,
        hidden=hidden,
        field=field,
    )


def _assemble(
    li_id: int,
    spec: ProposalChanges,
    campaign: Any,
    *,
    session: Session,
    known_formats: Iterable[str],
    hidden: frozenset[str],
    field: str = "targeting",
) -> LiveLineItem:
    if campaign is None and spec.campaign_id is not None:
        campaign = find(session=session, kind="campaign", obj_id=spec.campaign_id)
        if campaign is None:
            raise NotFound(f"campaign {spec.campaign_id} not found", field="campaign_id")
    if spec.bid_cpm is None:
        raise InvalidValue("bid_cpm is required", field="bid_cpm")
    rule_json = compile_targeting(spec.targeting or "", session=session, field=field, hidden=hidden)
    rule = None
    if rule_json is not None:
        segments = segment_rules(session=session, hidden=hidden)
        rule = expand_segments(from_json(rule_json), segments.get)
    formats = tuple(spec.formats or ())
    start: datetime | None = spec.start
    end: datetime | None = spec.end
    return LiveLineItem(
        id=li_id,
        campaign_id=campaign.id if campaign is not None else -1,
        advertiser_id=campaign.advertiser_id if campaign is not None else -1,
        priority=spec.priority if spec.priority is not None else 8,
        bid_cpm=float(spec.bid_cpm),
        rule=rule,
        formats=formats,
        creatives=_creatives(formats or known_formats),
        durations=(
            {PLACEHOLDER_CREATIVE: float(spec.creative_duration)}
            if spec.creative_duration is not None
            else {}
        ),
        caps=_caps(li_id, spec.frequency_cap, campaign),
        start=start,
        end=end,
        campaign_start=campaign.start if campaign is not None else None,
        campaign_end=campaign.end if campaign is not None else None,
        budget_total=_f(spec.budget),
        campaign_budget_total=_f(campaign.budget_total) if campaign is not None else None,
        campaign_budget_daily=_f(campaign.budget_daily) if campaign is not None else None,
        pacing_mode="asap" if spec.pacing_mode == "asap" else "even",
        campaign_pacing_mode=(
            "asap" if campaign is not None and campaign.pacing_mode == "asap" else "even"
        ),
        timezone=campaign.timezone if campaign is not None else "UTC",
        dayparting=parse_dayparting(campaign.dayparting) if campaign is not None else None,
        category=(
            (campaign.category or campaign.advertiser.category) if campaign is not None else None
        ),
    )
