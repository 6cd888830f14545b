"""Row snapshots for undo: JSON-able, and restored exactly (with the version moving on)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session

from adtarget.catalog import service
from adtarget.catalog.rows import delete_object, model_for, restore_row, to_row_dict
from adtarget.errors import Conflict, InvalidValue, NotFound

from .conftest import T1


def test_row_dict_is_json_and_complete(session: Session, world: dict[str, Any]) -> None:
    row = to_row_dict(world["campaign"])
    assert json.loads(json.dumps(row)) == row
    assert Decimal(row["budget_total"]) == 1000
    assert row["end"] == T1.isoformat()
    assert set(row) >= {"id", "version", "created_at", "updated_at", "dayparting", "timezone"}


def test_restore_after_update(session: Session, world: dict[str, Any]) -> None:
    cid = world["campaign"].id
    before = to_row_dict(world["campaign"])
    service.update_campaign(
        session=session, campaign_id=cid, changes={"name": "Renamed", "budget_daily": "5"}
    )
    restored = restore_row(session=session, kind="campaign", row=json.loads(json.dumps(before)))
    assert restored.name == "Spring" and restored.budget_daily == Decimal("100")  # type: ignore[attr-defined]
    assert restored.version == 3  # type: ignore[attr-defined]
    after = to_row_dict(restored)
    money = {"budget_total", "budget_daily"}
    for key in set(before) - {"version", "updated_at"} - money:
        assert after[key] == before[key], key
    for key in money:
        assert Decimal(after[key]) == Decimal(before[key]), key


def test_delete_then_restore_keeps_the_id(session: Session, world: dict[str, Any]) -> None:
    cr = world["creative"]
    row = delete_object(session=session, kind="creative", obj_id=cr.id)
    with pytest.raises(NotFound):
        service.get_creative(session=session, creative_id=cr.id)
    back = restore_row(session=session, kind="creative", row=row)
    assert back.id == row["id"] and back.attributes == row["attributes"]  # type: ignore[attr-defined]


def test_delete_refuses_referenced_rows(session: Session, world: dict[str, Any]) -> None:
    with pytest.raises(Conflict):
        delete_object(session=session, kind="advertiser", obj_id=world["advertiser"].id)


def test_unknown_kind_and_column(session: Session) -> None:
    with pytest.raises(InvalidValue) as info:
        model_for("planet")
    assert info.value.field == "kind"
    with pytest.raises(InvalidValue) as info:
        restore_row(session=session, kind="advertiser", row={"id": 1, "colour": "red"})
    assert info.value.field == "colour"
