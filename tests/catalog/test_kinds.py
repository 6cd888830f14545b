"""One registry of kinds: the API routes, the CLI, the undo engine and validation all follow it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from adtarget.api.app import create_app
from adtarget.catalog import service
from adtarget.catalog.kinds import EDITABLE, EDITABLE_NAMES, KINDS, kind_named, to_json
from adtarget.catalog.row_store import TABLES
from adtarget.cli import catalog as cli_catalog
from adtarget.errors import InvalidValue
from adtarget.settings import Settings


def test_every_consumer_lists_the_same_kinds(settings: Settings) -> None:
    assert EDITABLE_NAMES == ("advertiser", "campaign", "line_item", "creative", "segment",
                              "dimension")  # fmt: skip
    assert cli_catalog.KINDS == EDITABLE_NAMES
    assert set(KINDS) <= set(TABLES)  # every kind can be snapshotted for undo
    paths = set(create_app(settings).openapi()["paths"])
    for kind in EDITABLE:
        assert f"/v1/{kind.path}" in paths and f"/v1/{kind.path}/{{obj_id}}" in paths


def test_required_fields_come_from_the_create_models() -> None:
    assert KINDS["campaign"].required == ("advertiser_id", "name", "budget_total", "start", "end")
    assert "campaign_id" in KINDS["line_item"].required
    campaign = cli_catalog.create_app.registered_commands[1].callback
    assert campaign is not None
    assert "advertiser_id, name, budget_total, start, end" in (campaign.__doc__ or "")


def test_an_unknown_kind_names_the_choices() -> None:
    with pytest.raises(InvalidValue) as info:
        kind_named("planet")
    assert info.value.field == "kind" and "advertiser, campaign" in info.value.message
    with pytest.raises(InvalidValue):
        kind_named("ad_format", editable=True)  # registered, not changed by commands
    assert kind_named("ad_format").name == "ad_format"


def test_to_json_is_the_read_model(session: Session, world: dict[str, Any]) -> None:
    campaign = world["campaign"]
    out = to_json(campaign)
    assert out == to_json(campaign, "campaign")
    assert out == KINDS["campaign"].read.model_validate(campaign).model_dump(mode="json")
    assert out["id"] == campaign.id and out["status"] == "draft"
    with pytest.raises(InvalidValue):
        to_json(object())
    found = service.find(session=session, kind="campaign", obj_id=campaign.id)
    assert found is campaign
    assert service.find(session=session, kind="campaign", obj_id=campaign.id + 999) is None
