"""Catalog CRUD over HTTP, through the command layer (undo visible), with filters and paging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from adtarget.api.deps import app_session_factory
from adtarget.commands.catalog_commands import CatalogWriter

FLIGHT = {"start": "2026-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}
Seed = Callable[..., dict[str, Any]]


def test_create_read_list_patch_every_kind(client: TestClient, seed: Seed) -> None:
    objs = seed("acme")
    camp = objs["campaign"]
    assert camp["status"] == "draft" and camp["budget_total"] == 1000
    assert objs["line_item"]["status"] == "draft" and objs["line_item"]["priority"] == 2
    for path, key in (
        ("advertisers", "advertiser"),
        ("campaigns", "campaign"),
        ("line-items", "line_item"),
        ("creatives", "creative"),
        ("segments", "segment"),
    ):
        got = client.get(f"/v1/{path}/{objs[key]['id']}")
        assert got.status_code == 200 and got.json()["id"] == objs[key]["id"]
    active = client.patch(f"/v1/campaigns/{camp['id']}", json={"status": "active"})
    assert active.status_code == 200
    assert active.json()["status"] == "active" and active.json()["version"] == camp["version"] + 1


def test_line_item_fields_as_api_md_names_them(client: TestClient, seed: Seed) -> None:
    client.post("/v1/dimensions", json={"name": "country", "type": "category"})
    objs = seed("acme")
    resp = client.post(
        "/v1/line-items",
        json={
            "campaign_id": objs["campaign"]["id"],
            "name": "capped",
            "targeting": 'country in ("US", "CA")',
            "priority": 1,
            "bid_cpm": 7.25,
            "frequency_cap": {"count": 3, "window_seconds": 3600},
            "formats": ["video_15s"],
        },
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["frequency_cap"] == {"count": 3, "window_seconds": 3600}
    assert body["formats"] == ["video_15s"] and body["bid_cpm"] == 7.25
    assert body["targeting"] == 'country in ("US", "CA")'


def test_patch_with_stale_version_is_409(client: TestClient) -> None:
    adv = client.post("/v1/advertisers", json={"name": "acme"}).json()
    ok = client.patch(f"/v1/advertisers/{adv['id']}", json={"name": "acme2", "version": 1})
    assert ok.status_code == 200
    stale = client.patch(f"/v1/advertisers/{adv['id']}", json={"name": "acme3", "version": 1})
    assert stale.status_code == 409
    assert stale.json()["error"]["field"] == "version"


def test_list_filters_and_pagination(client: TestClient) -> None:
    a = client.post("/v1/advertisers", json={"name": "a"}).json()
    b = client.post("/v1/advertisers", json={"name": "b"}).json()
    for adv in (a, b, a, a):
        n = len(client.get("/v1/campaigns").json()["campaigns"])
        client.post(
            "/v1/campaigns",
            json={"advertiser_id": adv["id"], "name": f"c{n}", "budget_total": 10, **FLIGHT},
        )
    only_a = client.get("/v1/campaigns", params={"advertiser_id": a["id"]}).json()["campaigns"]
    assert len(only_a) == 3 and {c["advertiser_id"] for c in only_a} == {a["id"]}
    page1 = client.get("/v1/campaigns", params={"limit": 2}).json()
    assert len(page1["campaigns"]) == 2 and page1["next_after"] is not None
    page2 = client.get("/v1/campaigns", params={"limit": 2, "after": page1["next_after"]}).json()
    ids = [c["id"] for c in page1["campaigns"] + page2["campaigns"]]
    assert ids == sorted(set(ids)) and len(ids) == 4
    assert client.get("/v1/campaigns", params={"status": "active"}).json()["campaigns"] == []
    bad = client.get("/v1/campaigns", params={"status": "weird"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"


def test_attach_creative_of_another_advertiser_is_refused(client: TestClient, seed: Seed) -> None:
    a = seed("a")
    b = seed("b")
    resp = client.post(
        f"/v1/line-items/{a['line_item']['id']}/creatives",
        json={"creative_id": b["creative"]["id"]},
    )
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "creative_id"
    missing = client.post(
        f"/v1/line-items/{a['line_item']['id']}/creatives", json={"creative_id": 99999}
    )
    assert missing.status_code == 404


def test_http_changes_are_commands_that_undo(app: FastAPI, client: TestClient) -> None:
    adv = client.post("/v1/advertisers", json={"name": "acme"}).json()
    client.patch(f"/v1/advertisers/{adv['id']}", json={"name": "renamed"})
    # Open mode: the actor is "open"; its history holds both HTTP changes.
    writer = CatalogWriter(app_session_factory(app), actor="open")
    assert len(writer.history()) == 2
    writer.undo()
    assert client.get(f"/v1/advertisers/{adv['id']}").json()["name"] == "acme"
    writer.undo()
    assert client.get(f"/v1/advertisers/{adv['id']}").status_code == 404


def test_segments_and_dimensions_crud(app: FastAPI, client: TestClient) -> None:
    dim = client.post("/v1/dimensions", json={"name": "age", "type": "number"})
    assert dim.status_code == 201 and dim.json()["type"] == "number"
    assert client.get(f"/v1/dimensions/{dim.json()['id']}").json()["name"] == "age"
    listed = client.get("/v1/dimensions", params={"type": "number"}).json()["dimensions"]
    assert [d["name"] for d in listed] == ["age"]
    described = client.patch(f"/v1/dimensions/{dim.json()['id']}", json={"description": "years"})
    assert described.status_code == 200 and described.json()["description"] == "years"
    seg = client.post("/v1/segments", json={"name": "adults", "kind": "rule", "rule": "age >= 18"})
    assert seg.status_code == 201, seg.text
    got = client.get(f"/v1/segments/{seg.json()['id']}").json()
    assert got["rule"] == "age >= 18" and got["advertiser_id"] is None
    bad = client.patch(f"/v1/segments/{seg.json()['id']}", json={"rule": "height > 1"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "rule"
    ok = client.patch(f"/v1/segments/{seg.json()['id']}", json={"rule": "age >= 21"})
    assert ok.status_code == 200 and ok.json()["rule"] == "age >= 21"
    assert [s["name"] for s in client.get("/v1/segments").json()["segments"]] == ["adults"]
    # Undo over HTTP reverses the newest change of this actor only.
    undone = client.post("/v1/commands/undo")
    assert undone.status_code == 200
    assert client.get(f"/v1/segments/{seg.json()['id']}").json()["rule"] == "age >= 18"
    assert client.post("/v1/commands/redo").status_code == 200
    assert client.get(f"/v1/segments/{seg.json()['id']}").json()["rule"] == "age >= 21"


def test_huge_and_mistyped_bodies_are_4xx(app: FastAPI, client: TestClient) -> None:
    limit = app.state.settings.max_body_bytes
    huge = client.post(
        "/v1/advertisers",
        content=b"{" + b" " * limit + b"}",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413 and huge.json()["error"]["field"] == "body"
    typed = client.post(
        "/v1/campaigns", json={"advertiser_id": "one", "name": "c", "budget_total": 1, **FLIGHT}
    )
    assert typed.status_code == 422 and typed.json()["error"]["field"] == "advertiser_id"
    adv = client.post("/v1/advertisers", json={"name": "acme"}).json()
    fmt = client.post(
        "/v1/creatives", json={"advertiser_id": adv["id"], "name": "c", "format": "holo"}
    )
    assert fmt.status_code == 422 and fmt.json()["error"]["field"] == "format", fmt.text


def test_detach_creative_is_an_undoable_command(client: TestClient, seed: Seed) -> None:
    objs = seed("acme")
    li, cr = objs["line_item"]["id"], objs["creative"]["id"]
    gone = client.delete(f"/v1/line-items/{li}/creatives/{cr}")
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"line_item_id": li, "creative_id": cr, "attached": False}
    again = client.delete(f"/v1/line-items/{li}/creatives/{cr}")
    assert again.status_code == 404 and again.json()["error"]["field"] == "creative_id"
    undone = client.post("/v1/commands/undo")
    assert undone.status_code == 200 and "detach" in undone.json()["description"]
    relink = client.post(f"/v1/line-items/{li}/creatives", json={"creative_id": cr})
    assert relink.status_code == 409, relink.text  # undo put the link back
