"""Competitive ``category`` on advertisers and campaigns over HTTP: normalised, patched, undone."""

from __future__ import annotations

import warnings

from fastapi import FastAPI

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

FLIGHT = {"start": "2026-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}


def test_category_over_http_is_normalised_patched_cleared_and_undone(
    app: FastAPI, client: TestClient
) -> None:
    adv = client.post("/v1/advertisers", json={"name": "Acme", "category": " Auto "})
    assert adv.status_code == 201, adv.text
    assert adv.json()["category"] == "auto"
    plain = client.post("/v1/advertisers", json={"name": "Plain"}).json()
    assert plain["category"] is None
    camp = client.post(
        "/v1/campaigns",
        json={
            "advertiser_id": adv.json()["id"],
            "name": "Trucks",
            "budget_total": 10,
            "category": "telecom",
            **FLIGHT,
        },
    )
    assert camp.status_code == 201 and camp.json()["category"] == "telecom"
    cid = camp.json()["id"]
    patched = client.patch(f"/v1/campaigns/{cid}", json={"category": "finance"})
    assert patched.status_code == 200 and patched.json()["category"] == "finance"
    cleared = client.patch(f"/v1/campaigns/{cid}", json={"category": None})
    assert cleared.json()["category"] is None
    assert client.post("/v1/commands/undo").status_code == 200
    assert client.get(f"/v1/campaigns/{cid}").json()["category"] == "finance"
    assert client.post("/v1/commands/undo").status_code == 200
    assert client.get(f"/v1/campaigns/{cid}").json()["category"] == "telecom"
    assert client.post("/v1/commands/redo").status_code == 200
    assert client.get(f"/v1/campaigns/{cid}").json()["category"] == "finance"
    for bad in ("", "x" * 65, 7):
        r = client.patch(f"/v1/advertisers/{adv.json()['id']}", json={"category": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["field"] == "category"
