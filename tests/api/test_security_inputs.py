"""Odd input on the newer routes is a 4xx naming the field, never a 5xx or a silent default."""

from __future__ import annotations

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
