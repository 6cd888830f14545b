"""A service applies the settings it was built with, not the process environment's: an app
whose minimum audience size is 1,000 refuses a line item on a 150-member segment even though
the process default (100) would let it through."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from tests.audience.conftest import build, population

from adtarget.audience.store import SnapshotStore
from adtarget.catalog.db import open_catalog
from adtarget.catalog.tables import Segment
from adtarget.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", actor="tester", min_audience_size=1000)


def test_line_item_targeting_uses_the_apps_minimum_audience_size(
    client: TestClient, make_key: Callable[..., str], settings: Settings
) -> None:
    build(SnapshotStore(settings.snapshots_dir), population(500, seed=2))
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    seg = client.post("/v1/segments", json={"name": "s1", "kind": "list"}, headers=admin).json()
    with open_catalog(settings)() as session, session.begin():  # as the next publish measures
        session.execute(update(Segment).where(Segment.id == seg["id"]).values(last_size=150))
    adv = client.post("/v1/advertisers", json={"name": "A"}, headers=admin).json()
    camp: dict[str, Any] = client.post(
        "/v1/campaigns",
        json={
            "advertiser_id": adv["id"],
            "name": "c",
            "budget_total": 10,
            "start": "2026-01-01T00:00:00Z",
            "end": "2030-01-01T00:00:00Z",
        },
        headers=admin,
    ).json()
    body = {"campaign_id": camp["id"], "name": "li", "priority": 1, "bid_cpm": 1}
    res = client.post("/v1/line-items", json={**body, "targeting": 'segment("s1")'}, headers=admin)
    assert res.status_code == 422, res.text
    assert "1000" in res.json()["error"]["message"].replace(",", "")
    size = client.post("/v1/audiences/size", json={"rule": 'segment("s1")'}, headers=admin)
    assert size.json()["below_threshold"] is True  # sizing agrees: the same threshold
