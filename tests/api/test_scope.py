"""Advertiser keys across every route family: reports, undo history, keys, uploads, snapshots,
and other advertisers' segments referenced inside rules. Each attempt is a real key over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

Seed = Callable[..., dict[str, Any]]
MakeKey = Callable[..., str]
TODAY = datetime.now(UTC).date().isoformat()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def world(client: TestClient, make_key: MakeKey, seed: Seed) -> dict[str, Any]:
    admin = bearer(make_key("admin"))
    mine = seed("mine", admin)
    theirs = seed("theirs", admin)
    return {
        "mine": mine,
        "theirs": theirs,
        "admin": admin,
        "key": bearer(make_key("advertiser", mine["advertiser"]["id"])),
        "other": bearer(make_key("advertiser", theirs["advertiser"]["id"])),
    }


def ev(i: int, line_item_id: int) -> dict[str, Any]:
    ts = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).isoformat()
    return {
        "event_id": f"e{i}",
        "type": "impression",
        "ts": ts,
        "user_id": f"u{i}",
        "line_item_id": line_item_id,
        "cost": 0.01,
    }


def test_reports_show_only_the_keys_advertiser(client: TestClient, world: dict[str, Any]) -> None:
    events = [ev(i, world["mine"]["line_item"]["id"]) for i in range(2)]
    events += [ev(10 + i, world["theirs"]["line_item"]["id"]) for i in range(3)]
    posted = client.post("/v1/events", json=events, headers=world["admin"])
    assert posted.status_code == 200 and posted.json()["accepted"] == 5, posted.text
    theirs_id = str(world["theirs"]["advertiser"]["id"])
    q = {"from": TODAY, "to": TODAY, "group_by": "advertiser", "metrics": "impressions"}
    everyone = client.get("/v1/reports", params=q, headers=world["admin"]).json()["rows"]
    assert sorted(r["impressions"] for r in everyone) == [2, 3]
    for params in (q, {**q, "advertiser_id": theirs_id}):
        rows = client.get("/v1/reports", params=params, headers=world["key"]).json()["rows"]
        assert [(r["advertiser_id"], r["impressions"]) for r in rows] == [
            (str(world["mine"]["advertiser"]["id"]), 2)
        ]


def test_undo_only_reaches_the_keys_own_commands(client: TestClient, world: dict[str, Any]) -> None:
    key, other = world["key"], world["other"]
    assert client.get("/v1/commands", headers=key).json() == {"commands": []}
    # Nothing of its own to undo: 409, and the admin's seeded objects stay.
    nothing = client.post("/v1/commands/undo", headers=key)
    assert nothing.status_code == 409 and "error" in nothing.json()
    mine_li = world["mine"]["line_item"]["id"]
    assert (
        client.patch(f"/v1/line-items/{mine_li}", json={"bid_cpm": 9}, headers=key).status_code
        == 200
    )
    theirs_li = world["theirs"]["line_item"]["id"]
    assert (
        client.patch(f"/v1/line-items/{theirs_li}", json={"bid_cpm": 7}, headers=other).status_code
        == 200
    )
    assert client.post("/v1/commands/undo", headers=key).status_code == 200
    admin = world["admin"]
    assert client.get(f"/v1/line-items/{mine_li}", headers=admin).json()["bid_cpm"] == 3.5
    assert client.get(f"/v1/line-items/{theirs_li}", headers=admin).json()["bid_cpm"] == 7
    history = client.get("/v1/commands", headers=other).json()["commands"]
    assert len(history) == 1 and history[0]["state"] == "done"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/keys", {"role": "admin"}),
        ("GET", "/v1/keys", None),
        ("POST", "/v1/uploads", {"path": "/etc/hosts", "mode": "replace"}),
        ("POST", "/v1/snapshots/rollback", {"version": "v000001"}),
        ("POST", "/v1/events", []),
        ("POST", "/v1/dimensions", {"name": "d", "type": "number"}),
        ("PATCH", "/v1/advertisers/2", {"name": "mine-now"}),
    ],
)
def test_admin_only_routes_refuse_advertiser_keys(
    client: TestClient, world: dict[str, Any], method: str, path: str, body: Any
) -> None:
    resp = client.request(method, path, json=body, headers=world["key"])
    assert resp.status_code in (403, 404), resp.text
    assert resp.json()["error"]["field"] in ("authorization", "id")


def test_rules_cannot_name_another_advertisers_segment(
    client: TestClient, world: dict[str, Any]
) -> None:
    key = world["key"]
    theirs_seg = world["theirs"]["segment"]["name"]
    own_seg = world["mine"]["segment"]["name"]
    camp = world["mine"]["campaign"]["id"]
    li = {"campaign_id": camp, "name": "x", "priority": 1, "bid_cpm": 1}
    # Another advertiser's segment fails exactly as a missing one (tests/api/test_scope_parsed.py
    # proves it for every way a rule arrives, with a snapshot).
    stolen = client.post(
        "/v1/line-items",
        headers=key,
        json={**li, "targeting": f'segment("{theirs_seg}") or age > 1'},
    )
    assert stolen.status_code == 422
    assert stolen.json()["error"]["field"] == "targeting"
    assert stolen.json()["error"]["code"] == "rule_invalid"
    own = client.post(
        "/v1/line-items", headers=key, json={**li, "targeting": f'segment("{own_seg}")'}
    )
    assert own.status_code == 201, own.text
    patched = client.patch(
        f"/v1/line-items/{own.json()['id']}",
        headers=key,
        json={"targeting": f'not segment("{theirs_seg}")'},
    )
    assert patched.status_code == 422 and patched.json()["error"]["field"] == "targeting"
    seg = client.post(
        "/v1/segments",
        headers=key,
        json={"name": "wrapper", "kind": "rule", "rule": f'segment("{theirs_seg}")'},
    )
    assert seg.status_code == 422 and seg.json()["error"]["field"] == "rule"
    # Audience queries before any snapshot: the same answer as for the caller's own segment.
    for path, body in (
        ("/v1/audiences/size", {"rule": f'segment("{theirs_seg}")'}),
        ("/v1/audiences/size", {"rule": {"op": "segment", "name": theirs_seg}}),
        ("/v1/audiences/overlap", {"rules": ["", f'segment("{theirs_seg}")']}),
        ("/v1/audiences/export", {"rule": f'segment("{theirs_seg}")'}),
    ):
        resp = client.post(path, json=body, headers=key)
        assert resp.status_code in (404, 422), resp.text
        assert resp.json()["error"]["field"] in ("snapshot", "rules"), resp.text
    # Its own segment passes the check (and then meets "no snapshot yet").
    ok = client.post("/v1/audiences/size", json={"rule": f'segment("{own_seg}")'}, headers=key)
    assert ok.status_code == 404 and ok.json()["error"]["field"] == "snapshot"
    # An admin may still use any segment.
    admin = client.post(
        "/v1/line-items",
        headers=world["admin"],
        json={**li, "name": "y", "targeting": f'segment("{theirs_seg}")'},
    )
    assert admin.status_code == 201


def test_only_admins_decide_a_creatives_approval(client: TestClient, world: dict[str, Any]) -> None:
    """An advertiser cannot approve its creative after an admin rejected it, nor pre-set it."""
    creative = world["mine"]["creative"]
    path = f"/v1/creatives/{creative['id']}"
    rejected = client.patch(path, json={"approval_status": "rejected"}, headers=world["admin"])
    assert rejected.status_code == 200, rejected.text
    res = client.patch(path, json={"approval_status": "approved"}, headers=world["key"])
    assert res.status_code == 403 and res.json()["error"]["field"] == "approval_status"
    assert client.get(path, headers=world["admin"]).json()["approval_status"] == "rejected"
    body = {
        "advertiser_id": world["mine"]["advertiser"]["id"],
        "name": "self-approved",
        "format": creative["format"],
        "approval_status": "approved",
    }
    res = client.post("/v1/creatives", json=body, headers=world["key"])
    assert res.status_code == 403 and res.json()["error"]["field"] == "approval_status"
    renamed = client.patch(path, json={"name": "still mine"}, headers=world["key"])
    assert renamed.status_code == 200 and renamed.json()["approval_status"] == "rejected"
