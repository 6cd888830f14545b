"""Odd input on the newer routes is a 4xx naming the field, never a 5xx or a silent default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("slots=999999999999999999999", "slots"),  # was a 500 (re-encoding the pod)
        ("slots=21", "slots"),
        ("min_duration=nan", "min_duration"),  # was dropped: a 200 with no minimum
        ("min_duration=inf", "min_duration"),
        ("min_duration=0", "min_duration"),
    ],
)
def test_vast_pod_parameters_out_of_range_are_422s(
    client: TestClient, query: str, field: str
) -> None:
    resp = client.get(f"/v1/vast?user_id=u&max_duration=30&{query}")
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == field


def test_vast_pod_ranges_are_published(client: TestClient) -> None:
    params = {
        p["name"]: p["schema"]
        for p in client.get("/openapi.json").json()["paths"]["/v1/vast"]["get"]["parameters"]
    }
    assert params["slots"]["maximum"] == 20 and params["slots"]["minimum"] == 1
    assert params["max_duration"]["exclusiveMinimum"] == 0


def test_a_forecast_of_an_id_no_row_can_have_names_the_field(
    client: TestClient, make_key: Callable[..., str], seed: Callable[..., dict[str, Any]]
) -> None:
    """``line_item_id`` past 32 bits was a 422 with ``field: null`` (the database's overflow),
    for an advertiser key before its scope check even ran."""
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    own = seed("A", admin)
    adv = {"Authorization": f"Bearer {make_key('advertiser', own['advertiser']['id'])}"}
    for headers in (admin, adv):
        resp = client.post("/v1/forecast", json={"line_item_id": 10**30}, headers=headers)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["field"] == "line_item_id", resp.text
