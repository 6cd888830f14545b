"""``/v1/commands`` undo / redo / history over HTTP, on the real app with real keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from adtarget.api.app import create_app
from adtarget.api.auth import create_key
from adtarget.api.deps import app_session_factory
from adtarget.api.routes import commands
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.settings import Settings

ROOT = {"Authorization": "Bearer root-key"}


@pytest.fixture
def app(tmp_path: Path, started: Callable[..., TestClient]) -> FastAPI:
    app = create_app(Settings(data_dir=tmp_path / "data", admin_key="root-key"))
    if "/v1/commands" not in app.openapi()["paths"]:  # until the app includes it itself
        app.include_router(commands.router)
        app.openapi_schema = None
    started(app)
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _key(app: FastAPI, role: str) -> tuple[str, dict[str, str]]:
    with app_session_factory(app)() as s, s.begin():
        row, key = create_key(session=s, role=role)
        actor = f"key:{row.id}"
    return actor, {"Authorization": f"Bearer {key}"}


def _writer(app: FastAPI, actor: str) -> CatalogWriter:
    return CatalogWriter(app_session_factory(app), actor=actor)


def test_empty_history_and_nothing_to_undo_redo(client: TestClient) -> None:
    r = client.get("/v1/commands", headers=ROOT)
    assert r.status_code == 200 and r.json() == {"commands": []}
    for verb, code in (("undo", "nothing_to_undo"), ("redo", "nothing_to_redo")):
        r = client.post(f"/v1/commands/{verb}", headers=ROOT)
        assert r.status_code == 409
        assert r.json()["error"]["code"] == code
        assert "nothing" in r.json()["error"]["message"]


def test_undo_redo_history_roundtrip(app: FastAPI, client: TestClient) -> None:
    w = _writer(app, "admin-env")
    adv = w.create("advertiser", {"name": "Acme"})
    w.update("advertiser", adv["id"], {"name": "Acme Inc"})
    hist = client.get("/v1/commands", headers=ROOT).json()["commands"]
    assert [h["description"] for h in hist] == [
        f"update advertiser {adv['id']}: name='Acme Inc'",
        f"create advertiser 'Acme' (id {adv['id']})",
    ]
    assert set(hist[0]) >= {"id", "kind", "description", "state", "created_at", "actor"}
    r = client.post("/v1/commands/undo", headers=ROOT)
    assert r.status_code == 200
    body = r.json()
    assert body["undone"]["description"].startswith("update advertiser")
    assert body["result"]["rows"][0]["row"]["name"] == "Acme"
    assert client.get("/v1/commands", headers=ROOT).json()["commands"][0]["state"] == "undone"
    r = client.post("/v1/commands/redo", headers=ROOT)
    assert r.status_code == 200 and r.json()["result"]["rows"][0]["row"]["name"] == "Acme Inc"
    assert client.get("/v1/commands?limit=1", headers=ROOT).json()["commands"][0]["state"] == "done"


def test_each_key_undoes_only_its_own_changes(app: FastAPI, client: TestClient) -> None:
    actor, other = _key(app, "admin")
    _writer(app, "admin-env").create("advertiser", {"name": "Mine"})
    r = client.post("/v1/commands/undo", headers=other)
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_to_undo"
    assert client.get("/v1/commands", headers=other).json() == {"commands": []}
    _writer(app, actor).create("advertiser", {"name": "Theirs"})
    r = client.post("/v1/commands/undo", headers=other)
    assert r.status_code == 200 and "Theirs" in r.json()["undone"]["description"]


def test_conflicting_undo_is_409_naming_the_change(app: FastAPI, client: TestClient) -> None:
    actor, other = _key(app, "admin")
    adv = _writer(app, "admin-env").create("advertiser", {"name": "Acme"})
    _writer(app, actor).update("advertiser", adv["id"], {"name": "Renamed"})
    r = client.post("/v1/commands/undo", headers=ROOT)
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "conflict" and err["field"] == "version"
    assert "name 'Acme' -> 'Renamed'" in err["message"] and actor in err["message"]
    assert err["changed_fields"] == ["name"]


def test_reader_cannot_undo(app: FastAPI, client: TestClient) -> None:
    _, reader = _key(app, "reader")
    assert client.get("/v1/commands", headers=reader).status_code == 200
    r = client.post("/v1/commands/undo", headers=reader)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_every_http_catalog_mutation_is_undoable(client: TestClient) -> None:
    """Create/patch/status/archive/attach through the catalog routes: each one is in the
    caller's history, and undoing all of them over HTTP empties the catalog again."""

    def post(path: str, body: dict[str, object]) -> dict[str, object]:
        r = client.post(path, json=body, headers=ROOT)
        assert r.status_code == 201, r.text
        out: dict[str, object] = r.json()
        return out

    def patch(path: str, body: dict[str, object]) -> None:
        r = client.patch(path, json=body, headers=ROOT)
        assert r.status_code == 200, r.text

    adv = post("/v1/advertisers", {"name": "Acme"})["id"]
    camp = post(
        "/v1/campaigns",
        {
            "advertiser_id": adv,
            "name": "Spring",
            "budget_total": 1000,
            "start": "2026-03-01T00:00:00Z",
            "end": "2026-12-01T00:00:00Z",
        },
    )["id"]
    li = post(
        "/v1/line-items",
        {"campaign_id": camp, "name": "LI", "targeting": "", "priority": 3, "bid_cpm": 2.5},
    )["id"]
    cr = post(
        "/v1/creatives",
        {
            "advertiser_id": adv,
            "name": "spot",
            "format": "video_15s",
            "attributes": {"duration": 15},
        },
    )["id"]
    post("/v1/segments", {"name": "fans", "kind": "list"})
    post("/v1/dimensions", {"name": "genre", "type": "category"})
    post(f"/v1/line-items/{li}/creatives", {"creative_id": cr})
    patch(f"/v1/campaigns/{camp}", {"budget_total": 5000})
    patch(f"/v1/line-items/{li}", {"status": "active"})
    patch(f"/v1/creatives/{cr}", {"status": "archived"})
    patch(f"/v1/advertisers/{adv}", {"name": "Acme Inc"})

    hist = client.get("/v1/commands", headers=ROOT).json()["commands"]
    assert [h["description"].split(" ")[:2] for h in hist] == [
        ["update", "advertiser"],
        ["update", "creative"],
        ["update", "line_item"],
        ["update", "campaign"],
        ["attach", "creative"],
        ["create", "dimension"],
        ["create", "segment"],
        ["create", "creative"],
        ["create", "line_item"],
        ["create", "campaign"],
        ["create", "advertiser"],
    ]
    for h in hist:
        r = client.post("/v1/commands/undo", headers=ROOT)
        assert r.status_code == 200, r.text
        assert r.json()["command_id"] == h["id"] and r.json()["description"] == h["description"]
    for path in ("advertisers", "campaigns", "line-items", "creatives", "segments", "dimensions"):
        items = client.get(f"/v1/{path}", headers=ROOT).json()[path.replace("-", "_")]
        assert items == [], path
    r = client.post("/v1/commands/undo", headers=ROOT)
    assert r.status_code == 409
    assert set(r.json()["error"]) >= {"code", "message", "field"}
