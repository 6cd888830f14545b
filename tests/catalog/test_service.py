"""Service contract: CRUD, refusals naming their field, state machine, optimistic versions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from adtarget.catalog import service
from adtarget.catalog.db import make_session_factory
from adtarget.catalog.models import CampaignRead, LineItemCreate, LineItemRead
from adtarget.errors import (
    AdtargetError,
    Conflict,
    InvalidTransition,
    InvalidValue,
    NotFound,
    RuleSyntaxError,
    RuleValidationError,
)
from adtarget.rules.format import to_json
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec

from .conftest import T0, T1


def _line_item(world: dict[str, Any], **kw: Any) -> dict[str, Any]:
    data = {
        "campaign_id": world["campaign"].id,
        "name": "li",
        "targeting": 'country in ("US","CA") and age between 18 and 34',
        "priority": 3,
        "bid_cpm": "12.50",
    }
    data.update(kw)
    return data


def test_create_read_roundtrip(engine: Engine, world: dict[str, Any], session: Session) -> None:
    li = service.create(
        kind="line_item",
        session=session,
        data=_line_item(world, frequency_cap={"count": 3, "window_seconds": 3600}),
    )
    session.commit()
    assert (world["advertiser"].status, world["campaign"].status, li.status) == (
        "active",
        "draft",
        "draft",
    )
    with make_session_factory(engine)() as other:
        got = service.get(kind="line_item", session=other, obj_id=li.id)
        read = LineItemRead.model_validate(got)
        assert read.bid_cpm == Decimal("12.5") and read.version == 1
        assert read.frequency_cap is not None and read.frequency_cap.count == 3
        assert read.targeting_json == to_json(parse(li.targeting))
        assert read.created_at.tzinfo is not None
        camp = CampaignRead.model_validate(
            service.get(kind="campaign", session=other, obj_id=world["campaign"].id)
        )
        assert camp.budget_total == Decimal("1000") and camp.start == T0 and camp.end == T1
        assert camp.model_dump(mode="json")["budget_total"] == 1000.0


def test_empty_targeting_means_everyone(session: Session, world: dict[str, Any]) -> None:
    li = service.create(kind="line_item", session=session, data=_line_item(world, targeting=""))
    assert li.targeting_json is None


def test_accepts_pydantic_input(session: Session, world: dict[str, Any]) -> None:
    data = LineItemCreate.model_validate(_line_item(world))
    assert service.create(kind="line_item", session=session, data=data).id is not None


CAMPAIGN_REFUSALS = [
    ({"budget_total": "-1"}, "budget_total", InvalidValue),
    ({"budget_daily": "5000"}, "budget_daily", InvalidValue),
    ({"end": T0}, "end", InvalidValue),
    ({"currency": "usd"}, "currency", InvalidValue),
    ({"timezone": "Mars/Olympus"}, "timezone", InvalidValue),
    ({"dayparting": {"funday": [1]}}, "dayparting.funday", InvalidValue),
    ({"dayparting": {"mon": [18, 24]}}, "dayparting.mon[1]", InvalidValue),
    ({"advertiser_id": 424242}, "advertiser_id", NotFound),
    ({"status": "paused"}, "status", InvalidTransition),
    ({"flight": "x"}, "flight", InvalidValue),
    ({"name": "Spring"}, "name", Conflict),
]


@pytest.mark.parametrize(("bad", "field", "error"), CAMPAIGN_REFUSALS)
def test_campaign_refusals_name_the_field(
    session: Session, world: dict[str, Any], bad: dict[str, Any], field: str, error: type
) -> None:
    data = {
        "advertiser_id": world["advertiser"].id,
        "name": "Summer",
        "budget_total": "10",
        "start": T0,
        "end": T1,
        **bad,
    }
    with pytest.raises(error) as info:
        service.create(kind="campaign", session=session, data=data)
    assert info.value.field == field


LINE_ITEM_REFUSALS = [
    ({"priority": 0}, "priority", InvalidValue),
    ({"priority": 17}, "priority", InvalidValue),
    ({"bid_cpm": "-0.01"}, "bid_cpm", InvalidValue),
    ({"formats": ["video_30s", "hologram"]}, "formats[1]", InvalidValue),
    ({"frequency_cap": {"count": 0, "window_seconds": 60}}, "frequency_cap.count", InvalidValue),
    ({"start": T1, "end": T0}, "end", InvalidValue),
    ({"budget_total": "5000"}, "budget_total", InvalidValue),
    ({"targeting": 'country in ("US"'}, "targeting", RuleSyntaxError),
    ({"targeting": 'contry = "US"'}, "targeting", RuleValidationError),
    ({"targeting": 'country = "XX"'}, "targeting", RuleValidationError),
    ({"targeting": 'segment("nope")'}, "targeting", RuleValidationError),
    ({"campaign_id": 9999}, "campaign_id", NotFound),
    ({"pacing_mode": "fast"}, "pacing_mode", InvalidValue),
]


@pytest.mark.parametrize(("bad", "field", "error"), LINE_ITEM_REFUSALS)
def test_line_item_refusals_name_the_field(
    session: Session, world: dict[str, Any], bad: dict[str, Any], field: str, error: type
) -> None:
    with pytest.raises(error) as info:
        service.create(kind="line_item", session=session, data=_line_item(world, **bad))
    assert info.value.field == field
    assert isinstance(info.value, AdtargetError) and info.value.message


def test_rule_errors_point_at_the_token(session: Session, world: dict[str, Any]) -> None:
    with pytest.raises(RuleValidationError) as info:
        service.create(
            kind="line_item", session=session, data=_line_item(world, targeting='contry = "US"')
        )
    assert info.value.column == 1 and "country" in info.value.message  # did-you-mean


CREATIVE_REFUSALS = [
    ({"format": "hologram"}, "format"),
    ({"attributes": {"duration": 45}}, "attributes.duration"),
    ({"attributes": {"duration": "long"}}, "attributes.duration"),
    ({"attributes": {"bogus": 1}}, "attributes.bogus"),
    ({"attributes": {"click_through_url": "ftp://x"}}, "attributes.click_through_url"),
]


@pytest.mark.parametrize(("bad", "field"), CREATIVE_REFUSALS)
def test_creative_refusals_name_the_attribute(
    session: Session, world: dict[str, Any], bad: dict[str, Any], field: str
) -> None:
    data = {"advertiser_id": world["advertiser"].id, "name": "c2", "format": "video_30s", **bad}
    with pytest.raises(InvalidValue) as info:
        service.create(kind="creative", session=session, data=data)
    assert info.value.field == field


def test_updates_are_checked_against_the_stored_row(
    session: Session, world: dict[str, Any]
) -> None:
    cid = world["campaign"].id
    with pytest.raises(InvalidValue) as info:
        service.update(kind="campaign", session=session, obj_id=cid, changes={"budget_daily": 2000})
    assert info.value.field == "budget_daily"
    with pytest.raises(InvalidValue) as info:
        service.update(kind="campaign", session=session, obj_id=cid, changes={"end": T0})
    assert info.value.field == "end"
    # the refused values did not stay in the session: a later flush writes nothing of them
    session.flush()
    camp = service.get(kind="campaign", session=session, obj_id=cid)
    assert camp.end == T1 and camp.budget_daily == Decimal("100") and camp.version == 1
    with pytest.raises(InvalidValue) as info:
        service.update(kind="campaign", session=session, obj_id=cid, changes={"name": None})
    assert info.value.field == "name"


def test_update_changes_only_given_fields(session: Session, world: dict[str, Any]) -> None:
    li = service.create(kind="line_item", session=session, data=_line_item(world))
    before = li.targeting_json
    out = service.update(
        kind="line_item",
        session=session,
        obj_id=li.id,
        changes={"bid_cpm": "20"},
        expected_version=1,
    )
    assert out.bid_cpm == Decimal("20") and out.version == 2 and out.targeting_json == before
    out = service.update(
        kind="line_item",
        session=session,
        obj_id=li.id,
        changes={"targeting": 'genres has any ("scifi")'},
    )
    assert out.targeting_json == to_json(parse('genres has any ("scifi")'))
    out = service.update(
        kind="line_item", session=session, obj_id=li.id, changes={"frequency_cap": None}
    )
    assert out.frequency_cap_count is None and out.frequency_cap_window_seconds is None


def test_expected_version_conflict_names_both(session: Session, world: dict[str, Any]) -> None:
    aid = world["advertiser"].id
    service.update(kind="advertiser", session=session, obj_id=aid, changes={"name": "Acme 2"})
    with pytest.raises(Conflict) as info:
        service.update(
            kind="advertiser",
            session=session,
            obj_id=aid,
            changes={"name": "Acme 3"},
            expected_version=1,
        )
    assert info.value.field == "version"
    assert info.value.details == {"expected_version": 1, "current_version": 2}
    assert "version 2" in info.value.message and "version 1" in info.value.message


def test_concurrent_writers_conflict(
    engine: Engine, world: dict[str, Any], session: Session
) -> None:
    session.commit()
    factory = make_session_factory(engine)
    aid = world["advertiser"].id
    with factory() as first, factory() as second:
        service.get(kind="advertiser", session=first, obj_id=aid)
        stale = service.get(kind="advertiser", session=second, obj_id=aid)
        assert stale.version == 1
        service.update(kind="advertiser", session=first, obj_id=aid, changes={"name": "A1"})
        first.commit()
        with pytest.raises(Conflict) as info:
            service.update(kind="advertiser", session=second, obj_id=aid, changes={"name": "A2"})
        assert info.value.field == "version"
        second.rollback()


def test_state_machine_through_the_service(session: Session, world: dict[str, Any]) -> None:
    cid = world["campaign"].id
    for status in ("active", "paused", "active", "archived"):
        camp = service.change_status(session=session, kind="campaign", obj_id=cid, status=status)
        assert camp.status == status
    with pytest.raises(InvalidTransition) as info:
        service.change_status(session=session, kind="campaign", obj_id=cid, status="active")
    assert info.value.field == "status"
    assert info.value.details == {"current": "archived", "target": "active"}


def test_draft_cannot_pause(session: Session, world: dict[str, Any]) -> None:
    with pytest.raises(InvalidTransition):
        service.update(
            kind="campaign",
            session=session,
            obj_id=world["campaign"].id,
            changes={"status": "paused"},
        )


def test_names_are_unique_in_their_scope(session: Session, world: dict[str, Any]) -> None:
    with pytest.raises(Conflict) as info:
        service.create(kind="advertiser", session=session, data={"name": "Acme"})
    assert info.value.field == "name"
    other = service.create(kind="advertiser", session=session, data={"name": "Other"})
    same_name = {
        "advertiser_id": other.id,
        "name": "Spring",
        "budget_total": 1,
        "start": T0,
        "end": T1,
    }
    assert service.create(kind="campaign", session=session, data=same_name).name == "Spring"
    with pytest.raises(Conflict):
        service.update(
            kind="advertiser", session=session, obj_id=other.id, changes={"name": "Acme"}
        )


def test_attach_and_detach_creatives(session: Session, world: dict[str, Any]) -> None:
    li = service.create(
        kind="line_item", session=session, data=_line_item(world, formats=["video_30s"])
    )
    cr = world["creative"]
    service.attach_creative(session=session, line_item_id=li.id, creative_id=cr.id)
    assert service.list_creative_ids(session=session, line_item_id=li.id) == [cr.id]
    with pytest.raises(Conflict):
        service.attach_creative(session=session, line_item_id=li.id, creative_id=cr.id)
    with pytest.raises(InvalidValue) as info:  # attached creative can't leave accepted formats
        service.update(
            kind="creative",
            session=session,
            obj_id=cr.id,
            changes={"format": "video_15s", "attributes": {}},
        )
    assert info.value.field == "format"
    service.detach_creative(session=session, line_item_id=li.id, creative_id=cr.id)
    assert service.list_creative_ids(session=session, line_item_id=li.id) == []
    with pytest.raises(NotFound):
        service.detach_creative(session=session, line_item_id=li.id, creative_id=cr.id)


def test_attach_refuses_wrong_format_or_advertiser(session: Session, world: dict[str, Any]) -> None:
    li = service.create(
        kind="line_item", session=session, data=_line_item(world, formats=["pause_ad"])
    )
    with pytest.raises(InvalidValue) as info:
        service.attach_creative(
            session=session, line_item_id=li.id, creative_id=world["creative"].id
        )
    assert info.value.field == "creative_id"
    other = service.create(kind="advertiser", session=session, data={"name": "Other"})
    foreign = service.create(
        kind="creative",
        session=session,
        data={"advertiser_id": other.id, "name": "p", "format": "pause_ad"},
    )
    with pytest.raises(InvalidValue, match="advertiser"):
        service.attach_creative(session=session, line_item_id=li.id, creative_id=foreign.id)
    with pytest.raises(NotFound):
        service.attach_creative(session=session, line_item_id=li.id, creative_id=777)


def test_segments_compile_and_refuse_cycles(session: Session, world: dict[str, Any]) -> None:
    seg = service.create(
        kind="segment", session=session, data={"name": "young", "kind": "rule", "rule": "age < 25"}
    )
    assert seg.rule_json == to_json(parse("age < 25"))
    service.create(kind="segment", session=session, data={"name": "vip", "kind": "list"})
    li = service.create(
        kind="line_item",
        session=session,
        data=_line_item(world, targeting='segment("young") or segment("vip")'),
    )
    assert li.targeting_json is not None
    service.create(
        kind="segment",
        session=session,
        data={"name": "a", "kind": "rule", "rule": 'segment("young")'},
    )
    with pytest.raises(RuleValidationError) as info:
        service.update(
            kind="segment", session=session, obj_id=seg.id, changes={"rule": 'segment("a")'}
        )
    assert info.value.field == "rule" and "cycle" in info.value.message
    session.rollback()
    with pytest.raises(InvalidValue) as err:
        service.create(
            kind="segment", session=session, data={"name": "x", "kind": "list", "rule": "age<3"}
        )
    assert err.value.field == "rule"
    with pytest.raises(InvalidValue) as err:
        service.create(kind="segment", session=session, data={"name": "y", "kind": "rule"})
    assert err.value.field == "rule"


def test_dimension_registry_follows_rows(session: Session, world: dict[str, Any]) -> None:
    registry = service.dimension_registry(session=session)
    assert registry["country"] == DimensionSpec(
        "country", "category", frozenset({"US", "CA", "FR"})
    )
    assert registry["age"].type == "number"
    dim = service.create(
        kind="dimension", session=session, data={"name": "plan", "type": "category"}
    )
    service.create(
        kind="line_item", session=session, data=_line_item(world, targeting='plan = "ads"')
    )
    service.change_status(session=session, kind="dimension", obj_id=dim.id, status="archived")
    assert "plan" not in service.dimension_registry(session=session)
    with pytest.raises(RuleValidationError):
        service.create(
            kind="line_item",
            session=session,
            data=_line_item(world, name="li2", targeting='plan = "ads"'),
        )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "bad name", "type": "number"}, "name"),
        ({"name": "and", "type": "number"}, "name"),
        ({"name": "n", "type": "number", "allowed_values": ["1"]}, "allowed_values"),
        ({"name": "n", "type": "vector"}, "type"),
        ({"name": "country", "type": "number"}, "name"),
    ],
)
def test_dimension_refusals(
    session: Session, world: dict[str, Any], data: dict[str, Any], field: str
) -> None:
    with pytest.raises((InvalidValue, Conflict)) as info:
        service.create(kind="dimension", session=session, data=data)
    assert info.value.field == field


def test_new_ad_format_is_a_row(session: Session, world: dict[str, Any]) -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["seconds"],
        "properties": {"seconds": {"type": "integer", "maximum": 6}},
    }
    service.create_ad_format(
        session=session, data={"name": "bumper_6s", "media": "video", "json_schema": schema}
    )
    assert "bumper_6s" in [f.name for f in service.list_ad_formats(session=session)]
    base = {"advertiser_id": world["advertiser"].id, "format": "bumper_6s"}
    ok = service.create(
        kind="creative", session=session, data={**base, "name": "b", "attributes": {"seconds": 6}}
    )
    assert ok.format == "bumper_6s"
    with pytest.raises(InvalidValue) as info:
        service.create(kind="creative", session=session, data={**base, "name": "b2"})
    assert info.value.field == "attributes.seconds"
    with pytest.raises(InvalidValue) as info:
        service.create_ad_format(
            session=session,
            data={"name": "broken", "media": "video", "json_schema": {"type": "objekt"}},
        )
    assert info.value.field == "json_schema"
    with pytest.raises(Conflict):
        service.create_ad_format(
            session=session, data={"name": "bumper_6s", "media": "video", "json_schema": schema}
        )


def test_lists_filter_and_page(session: Session, world: dict[str, Any]) -> None:
    for i in range(3):
        service.create(kind="line_item", session=session, data=_line_item(world, name=f"li{i}"))
    aid, cid = world["advertiser"].id, world["campaign"].id
    items = service.list_line_items(session=session, advertiser_id=aid)
    assert [li.name for li in items] == ["li0", "li1", "li2"]
    assert len(service.list_line_items(session=session, campaign_id=cid, limit=2)) == 2
    assert service.list_line_items(session=session, status="active") == []
    assert len(service.list_objects(kind="campaign", session=session, advertiser_id=aid)) == 1
    assert len(service.list_objects(kind="creative", session=session, advertiser_id=aid + 1)) == 0
    assert [d.name for d in service.list_objects(kind="dimension", session=session)] == [
        "country",
        "age",
        "genres",
    ]
    with pytest.raises(NotFound) as info:
        service.get(kind="campaign", session=session, obj_id=12345)
    assert info.value.field == "id"


def test_page_scopes_to_one_advertiser(session: Session, world: dict[str, Any]) -> None:
    aid = world["advertiser"].id
    service.create(kind="line_item", session=session, data=_line_item(world, name="li"))
    own = service.page(session=session, kind="line_item", limit=10, scoped=True, advertiser_id=aid)
    assert [li.name for li in own] == ["li"]  # type: ignore[attr-defined]
    other = service.page(
        session=session, kind="campaign", limit=10, scoped=True, advertiser_id=aid + 1
    )
    assert other == []
    # an advertiser key without an advertiser sees nothing, never everything
    assert service.page(session=session, kind="campaign", limit=10, scoped=True) == []
    assert len(service.page(session=session, kind="campaign", limit=10)) == 1
