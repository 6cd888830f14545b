"""Checks that span fields or rows, run on the merged row state after a create or an update.

Why on the merged row: ``PATCH {"budget_daily": 500}`` is only wrong if the stored total is
lower, and ``PATCH {"end": ...}`` only if the stored start is later. Each check raises an
``adtarget.errors`` error whose ``field`` names the input field to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from adtarget.audience.privacy import check_targetable
from adtarget.catalog.db import MIN_AUDIENCE_SIZE
from adtarget.catalog.tables import AdFormat, Campaign, Creative, Dimension, LineItem, Segment
from adtarget.errors import InvalidValue, RuleSyntaxError
from adtarget.rules.ast import Rule, segment_names
from adtarget.rules.format import from_json, to_json
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec, check_dimension_name
from adtarget.rules.validate import hidden_reach, refuse_hidden, validate
from adtarget.settings import get_settings

if TYPE_CHECKING:
    from jsonschema import exceptions as js_exceptions

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def dimension_registry(*, session: Session) -> dict[str, DimensionSpec]:
    """The dimension registry rules are validated against: every non-archived dimension."""
    rows = session.scalars(select(Dimension).where(Dimension.status != "archived"))
    return {
        d.name: DimensionSpec(
            name=d.name,
            type=d.type,  # type: ignore[arg-type]  # CHECK constraint keeps it in the Literal
            allowed_values=frozenset(d.allowed_values) if d.allowed_values is not None else None,
            description=d.description,
        )
        for d in rows
    }


def segment_rules(
    *, session: Session, exclude: str | None = None, hidden: frozenset[str] = frozenset()
) -> dict[str, Rule | None]:
    """Segment name → its parsed rule (rule segments) or ``None`` (list segments).

    ``hidden`` names (segments the caller may not see) are left out, as if they did not exist.
    """
    out: dict[str, Rule | None] = {}
    for seg in session.scalars(select(Segment).where(Segment.status != "archived")):
        if seg.name == exclude or seg.name in hidden:
            continue
        out[seg.name] = parse(seg.rule) if seg.kind == "rule" and seg.rule else None
    return out


def segment_definitions(*, session: Session, hidden: frozenset[str]) -> dict[str, Rule | None]:
    """Every segment the caller may see, archived ones too, name -> parsed rule or ``None``: what
    ``hidden_reach`` follows to find a hidden segment behind a visible rule segment."""
    out: dict[str, Rule | None] = {}
    for name, kind, text in session.execute(select(Segment.name, Segment.kind, Segment.rule)):
        if name not in hidden:
            out[name] = parse(text) if kind == "rule" and text else None
    return out


def compile_targeting(
    text: str,
    *,
    session: Session,
    field: str = "targeting",
    own_name: str | None = None,
    hidden: frozenset[str] = frozenset(),
) -> dict[str, Any] | None:
    """Parse + validate rule text; return its JSON form (``None`` for empty = everyone).

    ``hidden``: segments the caller may not see; naming one fails as naming a missing one, and
    naming a rule segment whose stored rule reaches one (however deep) fails naming both.
    """
    if not text.strip():
        return None
    try:
        rule = parse(text)
        segments = segment_rules(session=session, exclude=own_name, hidden=hidden)
        if own_name is not None:
            segments[own_name] = rule  # lets validate() see a cycle through this segment
        validate(rule, dimension_registry(session=session), segments=segments)
        if hidden:  # authorize the rule as it will be evaluated: rule segments expanded
            definitions = segment_definitions(session=session, hidden=hidden)
            if own_name is not None:
                definitions[own_name] = rule
            refuse_hidden(rule, hidden, hidden_reach(definitions, hidden))
    except RuleSyntaxError as err:
        err.field = field
        raise
    return to_json(rule)


def check_line_item_targeting(
    targeting: str | Mapping[str, Any] | None,
    *,
    session: Session,
    min_size: int | None = None,
    field: str = "targeting",
) -> None:
    """``check_targetable`` with segment sizes from the catalog (called on line item writes)."""
    if targeting is None or (isinstance(targeting, str) and not targeting.strip()):
        return
    rule = parse(targeting) if isinstance(targeting, str) else from_json(targeting)
    names = segment_names(rule)
    if not names:
        return
    if min_size is None:  # the opener's settings (catalog.db.open_catalog), else the process's
        opened = session.info.get(MIN_AUDIENCE_SIZE)
        min_size = int(opened) if opened is not None else get_settings().min_audience_size
    rows = session.execute(select(Segment.name, Segment.last_size).where(Segment.name.in_(names)))
    check_targetable(rule, {name: size for name, size in rows}, min_size, field=field)


def check_flight(start: Any, end: Any) -> None:
    """End strictly after start (when both are set)."""
    if start is not None and end is not None and end <= start:
        raise InvalidValue(
            f"end ({end.isoformat()}) must be after start ({start.isoformat()})", field="end"
        )


def check_timezone(name: str) -> None:
    """An IANA time zone name such as ``America/New_York``."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(
            f"timezone {name!r} is not an IANA time zone name (e.g. 'America/New_York')",
            field="timezone",
        ) from None


def check_dayparting(schedule: Mapping[str, Any] | None) -> None:
    """``{"mon": [18, 19, 20], ...}``: known day keys, distinct hours 0..23."""
    if schedule is None:
        return
    for day, hours in schedule.items():
        if day not in DAYS:
            raise InvalidValue(
                f"dayparting: unknown day {day!r}; use {', '.join(DAYS)}",
                field=f"dayparting.{day}",
            )
        for i, hour in enumerate(hours):
            if not isinstance(hour, int) or isinstance(hour, bool) or not 0 <= hour <= 23:
                raise InvalidValue(
                    f"dayparting.{day}[{i}]: hour must be an integer 0..23, got {hour!r}",
                    field=f"dayparting.{day}[{i}]",
                )
        if len(set(hours)) != len(hours):
            raise InvalidValue(f"dayparting.{day}: hours repeat", field=f"dayparting.{day}")


def check_campaign(c: Campaign) -> None:
    """Budgets, flight, time zone and schedule of a campaign."""
    if c.budget_daily is not None and c.budget_daily > c.budget_total:
        raise InvalidValue(
            f"budget_daily ({c.budget_daily}) must not exceed budget_total ({c.budget_total})",
            field="budget_daily",
        )
    check_flight(c.start, c.end)
    check_timezone(c.timezone)
    check_dayparting(c.dayparting)


def check_line_item(li: LineItem, *, session: Session) -> None:
    """Flight, budget against the campaign, and ad formats that exist."""
    check_flight(li.start, li.end)
    campaign = session.get(Campaign, li.campaign_id)
    cap = campaign.budget_total if campaign is not None else None
    if cap is not None and li.budget_total is not None and li.budget_total > cap:
        raise InvalidValue(
            f"budget_total ({li.budget_total}) exceeds the campaign's budget_total ({cap})",
            field="budget_total",
        )
    known = set(session.scalars(select(AdFormat.name)))
    for i, name in enumerate(li.formats):
        if name not in known:
            raise InvalidValue(
                f"formats[{i}]: unknown ad format {name!r}; known: {', '.join(sorted(known))}",
                field=f"formats[{i}]",
            )
    if len(set(li.formats)) != len(li.formats):
        raise InvalidValue("formats: a format is listed twice", field="formats")


def _schema_error_field(err: js_exceptions.ValidationError, schema: Mapping[str, Any]) -> str:
    path = "attributes" + "".join(
        f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path
    )
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        props = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
        extra = sorted(k for k in err.instance if k not in props)
        if extra:
            return f"{path}.{extra[0]}"
    if err.validator == "required" and isinstance(err.validator_value, list):
        missing = [k for k in err.validator_value if k not in (err.instance or {})]
        if missing:
            return f"{path}.{missing[0]}"
    return path


def check_attributes(fmt: AdFormat, attributes: Mapping[str, Any]) -> None:
    """Validate creative attributes against the format's JSON Schema, naming the bad path."""
    from jsonschema import Draft202012Validator  # lazy: ~0.13 s of every CLI start otherwise
    from jsonschema.validators import validator_for

    cls = validator_for(fmt.json_schema, default=Draft202012Validator)
    errors = sorted(
        cls(fmt.json_schema).iter_errors(dict(attributes)),
        key=lambda e: (list(map(str, e.absolute_path)), e.message),
    )
    if errors:
        err = errors[0]
        field = _schema_error_field(err, fmt.json_schema)
        raise InvalidValue(
            f"{field}: {err.message} (format {fmt.name!r})", field=field, format=fmt.name
        )


def check_creative(cr: Creative, *, session: Session) -> None:
    """The format exists and the attributes fit its schema."""
    fmt = session.get(AdFormat, cr.format)
    if fmt is None:
        known = ", ".join(sorted(session.scalars(select(AdFormat.name))))
        raise InvalidValue(f"unknown ad format {cr.format!r}; known: {known}", field="format")
    check_attributes(fmt, cr.attributes)


def check_json_schema(schema: Mapping[str, Any]) -> None:
    """A new ad format's schema must itself be a valid JSON Schema describing an object."""
    from jsonschema import Draft202012Validator
    from jsonschema import exceptions as js_exceptions
    from jsonschema.validators import validator_for

    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except js_exceptions.SchemaError as exc:
        raise InvalidValue(f"json_schema: {exc.message}", field="json_schema") from None
    if schema.get("type") != "object":
        raise InvalidValue(
            'json_schema: the top level must be {"type": "object"}', field="json_schema"
        )


def check_dimension(d: Dimension) -> None:
    """Writable name; allowed values only for category/set, distinct."""
    check_dimension_name(d.name)
    if d.allowed_values is not None:
        if d.type not in ("category", "set"):
            raise InvalidValue(
                f"allowed_values only apply to category/set dimensions, not {d.type}",
                field="allowed_values",
            )
        if len(set(d.allowed_values)) != len(d.allowed_values):
            raise InvalidValue("allowed_values repeat a value", field="allowed_values")
