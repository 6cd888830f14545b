"""The generic catalog engine behind ``catalog.service``: create / update / list by kind.

One code path for every kind, so the order of checks (version, status transition, field
values, cross-row rules, name uniqueness, rule compilation, flush) is the same everywhere.
Keyword-only, the session passed in; flushes (so ids exist) but never commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from adtarget.catalog import checks
from adtarget.catalog.kinds import kind_named
from adtarget.catalog.models import AdFormatCreate, parse_input
from adtarget.catalog.rows import check_version, flush, get_object, model_for
from adtarget.catalog.status import INITIAL_STATUS, TRANSITIONS, check_transition
from adtarget.catalog.tables import (
    AdFormat,
    Advertiser,
    Base,
    Campaign,
    Creative,
    Dimension,
    LineItem,
    LineItemCreative,
    Segment,
)
from adtarget.errors import AdtargetError, Conflict, InvalidTransition, InvalidValue, NotFound

T = TypeVar("T", bound=Base)
_NAME_SCOPE: dict[str, str | None] = {
    "advertiser": None,
    "campaign": "advertiser_id",
    "line_item": "campaign_id",
    "creative": "advertiser_id",
    "segment": None,
    "dimension": None,
}


def _check_name_free(session: Session, kind: str, obj: Base) -> None:
    model = type(obj)
    query = select(model).where(model.name == obj.name)  # type: ignore[attr-defined]
    scope = _NAME_SCOPE[kind]
    if scope is not None:
        query = query.where(getattr(model, scope) == getattr(obj, scope))
    with session.no_autoflush:
        for other in session.scalars(query):
            if other is not obj:
                where = f" in this {scope.removesuffix('_id')}" if scope else ""
                raise Conflict(
                    f"a {kind} named {obj.name!r} already exists{where} (id {other.id})",  # type: ignore[attr-defined]
                    field="name",
                    existing_id=other.id,  # type: ignore[attr-defined]
                )


def _require(session: Session, model: type[T], obj_id: int | None, field: str) -> T | None:
    if obj_id is None:
        return None
    obj = session.get(model, obj_id)
    if obj is None:
        raise NotFound(f"{field} {obj_id} does not exist", field=field)
    if getattr(obj, "status", None) == "archived":
        raise InvalidValue(f"{field} {obj_id} is archived", field=field)
    return obj


def _check_rows(session: Session, kind: str, obj: Base) -> None:
    """Cross-field and cross-row checks of ``obj``'s merged state; compiles rules."""
    with session.no_autoflush:
        if isinstance(obj, Campaign):
            checks.check_campaign(obj)
        elif isinstance(obj, LineItem):
            checks.check_line_item(obj, session=session)
        elif isinstance(obj, Creative):
            checks.check_creative(obj, session=session)
        elif isinstance(obj, Dimension):
            checks.check_dimension(obj)
    if kind in _NAME_SCOPE:
        _check_name_free(session, kind, obj)


def _values(model_in: BaseModel, *, exclude_unset: bool) -> dict[str, Any]:
    values = model_in.model_dump(exclude_unset=exclude_unset)
    if "frequency_cap" in values:
        cap = values.pop("frequency_cap")
        values["frequency_cap_count"] = cap["count"] if cap else None
        values["frequency_cap_window_seconds"] = cap["window_seconds"] if cap else None
    return values


def _compile(session: Session, obj: Base, values: dict[str, Any]) -> None:
    if isinstance(obj, LineItem) and "targeting" in values:
        obj.targeting = obj.targeting or ""
        obj.targeting_json = checks.compile_targeting(obj.targeting, session=session)
        checks.check_line_item_targeting(obj.targeting_json, session=session)
    if isinstance(obj, Segment) and ("rule" in values or obj.id is None):
        if obj.kind == "list" and obj.rule is not None:
            raise InvalidValue("a list segment has no rule; upload its members", field="rule")
        if obj.kind == "rule":
            if not (obj.rule or "").strip():
                raise InvalidValue("a rule segment needs a rule", field="rule")
            obj.rule_json = checks.compile_targeting(
                obj.rule or "", session=session, field="rule", own_name=obj.name
            )


def _check_initial_status(kind: str, initial: str, status: str) -> None:
    """A new object is created in its initial status or one that status may go to; the error
    speaks of creating, not of a change from a status the object never had."""
    try:
        check_transition(initial, status)
    except InvalidTransition as err:
        allowed = [initial, *sorted(TRANSITIONS.get(initial, ()))]
        raise InvalidTransition(
            f"a new {kind.replace('_', ' ')} cannot be created with status {status!r}; "
            f"use one of {', '.join(repr(a) for a in allowed)} (default {initial!r})",
            field="status",
        ) from err


def create(*, session: Session, kind: str, data: BaseModel | Mapping[str, Any]) -> Base:
    """Create a catalog object of ``kind`` from ``data``; flushes so it has an id."""
    if kind == "ad_format":
        return create_ad_format(session=session, data=data)
    model = model_for(kind)
    model_in = parse_input(kind_named(kind).create, data)
    values = _values(model_in, exclude_unset=False)
    initial = INITIAL_STATUS[kind]
    status = values.pop("status", None) or initial
    _check_initial_status(kind, initial, status)
    if kind in ("campaign", "creative"):
        _require(session, Advertiser, values["advertiser_id"], "advertiser_id")
    elif kind == "line_item":
        _require(session, Campaign, values["campaign_id"], "campaign_id")
    elif kind == "segment":
        _require(session, Advertiser, values.get("advertiser_id"), "advertiser_id")
    obj = model(**values, status=status)
    _check_rows(session, kind, obj)
    _compile(session, obj, values)
    session.add(obj)
    flush(session, kind=kind)
    return obj


def update(
    *,
    session: Session,
    kind: str,
    obj_id: int,
    changes: BaseModel | Mapping[str, Any],
    expected_version: int | None = None,
) -> Base:
    """Apply ``changes`` (only the fields given) to one object; checks version and status."""
    obj = get_object(session=session, kind=kind, obj_id=obj_id)
    check_version(obj, expected_version, kind=kind)
    values = _values(parse_input(_update_model(kind), changes), exclude_unset=True)
    table = obj.__table__
    for key, value in values.items():
        if value is None and key in table.c and not table.c[key].nullable:
            raise InvalidValue(f"{key} cannot be null", field=key)
    if "status" in values:
        check_transition(obj.status, values["status"])  # type: ignore[attr-defined]
    if isinstance(obj, Creative) and "format" in values:
        _check_links_accept(session, obj, values["format"])
    with session.no_autoflush:
        for key, value in values.items():
            setattr(obj, key, value)
        try:
            _check_rows(session, kind, obj)
            _compile(session, obj, values)
        except AdtargetError:
            # A refused change must not linger in the session to be flushed by someone else.
            touched = [*values, "targeting_json", "rule_json"]
            session.expire(obj, [k for k in touched if hasattr(type(obj), k)])
            raise
    flush(session, kind=kind)
    return obj


def _update_model(kind: str) -> type[BaseModel]:
    model = kind_named(kind, editable=True).update
    assert model is not None
    return model


def get(*, session: Session, kind: str, obj_id: Any) -> Base:
    """One object by id, or ``NotFound`` naming the kind and id."""
    return get_object(session=session, kind=kind, obj_id=obj_id)


def list_objects(
    *,
    session: Session,
    kind: str,
    limit: int = 100,
    offset: int = 0,
    **filters: Any,
) -> list[Base]:
    """Objects of ``kind`` by id, filtered by equal columns (``None`` filters are ignored)."""
    model = model_for(kind)
    pk = next(iter(model.__table__.primary_key.columns))  # type: ignore[attr-defined]
    query = select(model).order_by(pk).limit(min(max(limit, 1), 1000)).offset(max(offset, 0))
    for key, value in filters.items():
        if value is None:
            continue
        if not hasattr(model, key):
            raise InvalidValue(f"cannot filter {kind} by {key!r}", field=key)
        query = query.where(getattr(model, key) == value)
    return list(session.scalars(query))


def change_status(
    *, session: Session, kind: str, obj_id: int, status: str, expected_version: int | None = None
) -> Base:
    """Move an object along the state machine (draft → active ⇄ paused → archived)."""
    return update(
        session=session,
        kind=kind,
        obj_id=obj_id,
        changes={"status": status},
        expected_version=expected_version,
    )


def _check_links_accept(session: Session, creative: Creative, fmt: str) -> None:
    query = (
        select(LineItem)
        .join(LineItemCreative, LineItemCreative.line_item_id == LineItem.id)
        .where(LineItemCreative.creative_id == creative.id)
    )
    for li in session.scalars(query):
        if li.formats and fmt not in li.formats:
            raise InvalidValue(
                f"creative {creative.id} is attached to line item {li.id}, which does not "
                f"accept format {fmt!r}",
                field="format",
            )


def attach_creative(*, session: Session, line_item_id: int, creative_id: int) -> LineItemCreative:
    """Let a line item show a creative of the same advertiser, in a format it accepts."""
    li = session.get(LineItem, line_item_id)
    if li is None:
        raise NotFound(f"line item {line_item_id} does not exist", field="line_item_id")
    cr = _require(session, Creative, creative_id, "creative_id")
    assert cr is not None
    campaign = session.get(Campaign, li.campaign_id)
    if campaign is not None and campaign.advertiser_id != cr.advertiser_id:
        raise InvalidValue(
            f"creative {creative_id} belongs to advertiser {cr.advertiser_id}, line item "
            f"{line_item_id} to advertiser {campaign.advertiser_id}",
            field="creative_id",
        )
    if li.formats and cr.format not in li.formats:
        raise InvalidValue(
            f"line item {line_item_id} accepts formats {li.formats}, creative {creative_id} "
            f"is {cr.format!r}",
            field="creative_id",
        )
    if session.get(LineItemCreative, (line_item_id, creative_id)) is not None:
        raise Conflict(
            f"creative {creative_id} is already attached to line item {line_item_id}",
            field="creative_id",
        )
    link = LineItemCreative(line_item_id=line_item_id, creative_id=creative_id)
    session.add(link)
    flush(session, kind="line_item_creative")
    return link


def detach_creative(*, session: Session, line_item_id: int, creative_id: int) -> None:
    """Remove a creative from a line item (``NotFound`` if it was not attached)."""
    link = session.get(LineItemCreative, (line_item_id, creative_id))
    if link is None:
        raise NotFound(
            f"creative {creative_id} is not attached to line item {line_item_id}",
            field="creative_id",
        )
    session.delete(link)
    flush(session, kind="line_item_creative")


def list_creative_ids(*, session: Session, line_item_id: int) -> list[int]:
    """Ids of the creatives attached to a line item, ascending."""
    query = (
        select(LineItemCreative.creative_id)
        .where(LineItemCreative.line_item_id == line_item_id)
        .order_by(LineItemCreative.creative_id)
    )
    return list(session.scalars(query))


def create_ad_format(*, session: Session, data: BaseModel | Mapping[str, Any]) -> AdFormat:
    """Register a new ad type: a row with its JSON Schema (no code change, no downtime)."""
    fmt_in = parse_input(AdFormatCreate, data)
    values = fmt_in.model_dump()
    checks.check_json_schema(values["json_schema"])
    if session.get(AdFormat, values["name"]) is not None:
        raise Conflict(f"ad format {values['name']!r} already exists", field="name")
    fmt = AdFormat(**values)
    session.add(fmt)
    flush(session, kind="ad_format")
    return fmt
