"""Serving decides on the rule the engine uses: a line item whose targeting reaches another
advertiser's private segment — directly or through a rule segment an admin wrote — does not
serve, and explain says why. (The API refuses such writes by advertiser keys; an admin key can
still write them, so the loader is where the rule holds for everyone.)"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.api.conftest import make_live

from adtarget.api.container import container_of
from adtarget.api.deps import app_session_factory
from adtarget.decision.loader import load_catalog


def _segment(client: TestClient, body: dict[str, Any]) -> None:
    made = client.post("/v1/segments", json=body)
    assert made.status_code == 201, made.text


def test_a_line_item_reaching_another_advertisers_segment_does_not_serve(
    client: TestClient, app: FastAPI
) -> None:
    other = client.post("/v1/advertisers", json={"name": "B"}).json()
    _segment(client, {"name": "s1", "kind": "list", "advertiser_id": other["id"]})
    _segment(client, {"name": "pub", "kind": "list"})  # global: anyone may target it
    _segment(client, {"name": "g", "kind": "rule", "rule": 'segment("pub") or segment("s1")'})
    _segment(client, {"name": "g2", "kind": "rule", "rule": 'not segment("g")'})
    made = make_live(
        client,
        [
            ("direct", 'segment("s1")', 1),
            ("via_rule", 'segment("g2") and country = "US"', 1),
            ("global", 'segment("pub")', 2),
            ("plain", 'country = "US"', 3),
        ],
    )
    with app_session_factory(app)() as session:
        loaded = load_catalog(session)
    served = {item.id for item in loaded.items}
    assert served == {made["global"]["id"], made["plain"]["id"]}
    reasons = {li: (reason, detail) for li, reason, detail in loaded.not_live}
    assert reasons[made["direct"]["id"]][0] == "foreign_segment"
    reason, detail = reasons[made["via_rule"]["id"]]
    assert reason == "foreign_segment"
    assert "g2 -> g -> s1" in detail and f"advertiser {other['id']}" in detail
    # The served index and explain say the same (built now, as the test_decisions fixture
    # does: the background rebuild may still be on an older catalog under load).
    container_of(app).decisions.engine.index_holder.refresh()
    resp = client.post(
        "/v1/decisions",
        json={"user_id": "u1", "context": {"country": "US"}, "explain": True, "limit": 5},
    )
    assert resp.status_code == 200, resp.text
    served_ids = {d["line_item_id"] for d in resp.json()["decisions"]}
    assert made["direct"]["id"] not in served_ids and made["via_rule"]["id"] not in served_ids
    not_served = {e["line_item_id"]: e for e in resp.json()["explain"]["not_served"]}
    assert not_served[made["via_rule"]["id"]]["reason"] == "foreign_segment", not_served
