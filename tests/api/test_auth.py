"""Keys and roles: open mode, 401/403, reader, decisions keys, advertiser scoping, env admin key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from adtarget.api.app import create_app
from adtarget.api.auth import hash_key, list_keys, revoke_key
from adtarget.api.deps import app_key_resolver, app_session_factory
from adtarget.catalog.tables import ApiKey
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.settings import Settings

Seed = Callable[..., dict[str, Any]]
MakeKey = Callable[..., str]
FLIGHT = {"start": "2026-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_open_mode_until_the_first_key(client: TestClient, make_key: MakeKey) -> None:
    assert client.get("/v1/advertisers").status_code == 200
    make_key("admin")
    resp = client.get("/v1/advertisers")
    assert resp.status_code == 401
    assert resp.json()["error"] == {
        "code": "unauthorized",
        "message": "missing API key: send 'Authorization: Bearer KEY'",
        "field": "authorization",
    }


@pytest.mark.parametrize("header", ["Bearer nope", "Basic abc", "Bearer", "token"])
def test_unknown_or_malformed_key_is_401(
    client: TestClient, make_key: MakeKey, header: str
) -> None:
    make_key("admin")
    resp = client.get("/v1/advertisers", headers={"Authorization": header})
    assert resp.status_code == 401
    assert resp.json()["error"]["field"] == "authorization"
    assert (
        client.post(
            "/v1/decisions", json={"user_id": "u"}, headers={"Authorization": header}
        ).status_code
        == 401
    )


def test_keys_are_stored_hashed(app: FastAPI, make_key: MakeKey) -> None:
    key = make_key("reader")
    with app_session_factory(app)() as session:
        rows = list_keys(session=session)
    assert [r.key_hash for r in rows] == [hash_key(key)]
    assert all(key not in (r.key_hash, r.key_prefix, r.name) for r in rows)


def test_reader_reads_but_cannot_change(client: TestClient, make_key: MakeKey, seed: Seed) -> None:
    admin = bearer(make_key("admin"))
    seed("acme", admin)
    reader = bearer(make_key("reader"))
    assert client.get("/v1/campaigns", headers=reader).status_code == 200
    resp = client.post("/v1/advertisers", json={"name": "x"}, headers=reader)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
    assert client.patch("/v1/advertisers/1", json={"name": "y"}, headers=reader).status_code == 403
    assert client.post("/v1/decisions", json={"user_id": "u"}, headers=reader).status_code == 403


def test_decisions_key_only_reaches_decisions(client: TestClient, make_key: MakeKey) -> None:
    dec = bearer(make_key("decisions"))
    assert client.get("/v1/advertisers", headers=dec).status_code == 403
    assert client.post("/v1/advertisers", json={"name": "x"}, headers=dec).status_code == 403
    # It reads nothing: not the catalog, reports, history, audiences, snapshots or keys.
    for method, path, body in (
        ("GET", "/v1/segments", None),
        ("GET", "/v1/dimensions", None),
        ("GET", "/v1/reports?from=2026-01-01&to=2026-01-02", None),
        ("GET", "/v1/commands", None),
        ("POST", "/v1/commands/undo", None),
        ("POST", "/v1/audiences/size", {"rule": ""}),
        ("GET", "/v1/snapshots", None),
        ("GET", "/v1/keys", None),
        ("GET", "/v1/uploads/x", None),
    ):
        resp = client.request(method, path, json=body, headers=dec)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["error"]["field"] == "authorization"
    # Ad servers report delivery with the same key (POST /v1/events is its only other route).
    assert client.post("/v1/events", json=[], headers=dec).status_code == 200
    assert client.post("/v1/decisions", json={"user_id": "u"}, headers=dec).status_code == 200


def test_admin_env_key_is_admin_everywhere(
    settings: Settings, started: Callable[..., TestClient]
) -> None:
    app = create_app(settings.model_copy(update={"admin_key": "s3cret-env-key"}))
    client = started(app)
    assert client.get("/v1/advertisers").status_code == 401  # not open: a key exists
    resp = client.post("/v1/advertisers", json={"name": "x"}, headers=bearer("s3cret-env-key"))
    assert resp.status_code == 201
    history = CatalogWriter(app_session_factory(app), actor="admin-env").history()
    assert len(history) == 1


def test_revoked_key_stops_working(app: FastAPI, client: TestClient, make_key: MakeKey) -> None:
    make_key("admin")
    reader = make_key("reader")
    assert client.get("/v1/advertisers", headers=bearer(reader)).status_code == 200
    with app_session_factory(app)() as session, session.begin():
        row = session.query(ApiKey).filter_by(key_hash=hash_key(reader)).one()
        revoke_key(session=session, key_id=row.id)
    app_key_resolver(app).invalidate()
    assert client.get("/v1/advertisers", headers=bearer(reader)).status_code == 401


def test_key_actor_names_the_command_history(
    app: FastAPI, client: TestClient, make_key: MakeKey
) -> None:
    key = make_key("admin")
    client.post("/v1/advertisers", json={"name": "acme"}, headers=bearer(key))
    with app_session_factory(app)() as session:
        key_id = session.query(ApiKey).filter_by(key_hash=hash_key(key)).one().id
    assert len(CatalogWriter(app_session_factory(app), actor=f"key:{key_id}").history()) == 1


class TestAdvertiserScope:
    """An advertiser key never reads or changes another advertiser's objects."""

    @pytest.fixture
    def world(self, client: TestClient, make_key: MakeKey, seed: Seed) -> dict[str, Any]:
        admin = bearer(make_key("admin"))
        mine = seed("mine", admin)
        theirs = seed("theirs", admin)
        key = bearer(make_key("advertiser", mine["advertiser"]["id"]))
        return {"mine": mine, "theirs": theirs, "key": key, "admin": admin}

    @pytest.mark.parametrize(
        ("path", "kind"),
        [
            ("advertisers", "advertiser"),
            ("campaigns", "campaign"),
            ("line-items", "line_item"),
            ("creatives", "creative"),
            ("segments", "segment"),
        ],
    )
    def test_foreign_objects_are_invisible_and_unchangeable(
        self, client: TestClient, world: dict[str, Any], path: str, kind: str
    ) -> None:
        own_id = world["mine"][kind]["id"]
        foreign_id = world["theirs"][kind]["id"]
        key = world["key"]
        assert client.get(f"/v1/{path}/{own_id}", headers=key).status_code == 200
        assert client.get(f"/v1/{path}/{foreign_id}", headers=key).status_code == 404
        patch = client.patch(f"/v1/{path}/{foreign_id}", json={"status": "archived"}, headers=key)
        assert patch.status_code == 404
        listed = client.get(f"/v1/{path}", headers=key).json()
        ids = {o["id"] for o in listed[path.replace("-", "_")]}
        assert own_id in ids and foreign_id not in ids
        # The foreign object is untouched.
        after = client.get(f"/v1/{path}/{foreign_id}", headers=world["admin"]).json()
        assert after["status"] == world["theirs"][kind]["status"]

    def test_cannot_create_under_another_advertiser(
        self, client: TestClient, world: dict[str, Any]
    ) -> None:
        key = world["key"]
        theirs = world["theirs"]
        camp = client.post(
            "/v1/campaigns",
            headers=key,
            json={
                "advertiser_id": theirs["advertiser"]["id"],
                "name": "sneaky",
                "budget_total": 1,
                **FLIGHT,
            },
        )
        assert camp.status_code == 404
        li = client.post(
            "/v1/line-items",
            headers=key,
            json={
                "campaign_id": theirs["campaign"]["id"],
                "name": "sneaky",
                "targeting": "",
                "priority": 1,
                "bid_cpm": 1,
            },
        )
        assert li.status_code == 404
        attach = client.post(
            f"/v1/line-items/{theirs['line_item']['id']}/creatives",
            headers=key,
            json={"creative_id": world["mine"]["creative"]["id"]},
        )
        assert attach.status_code == 404
        steal = client.post(
            f"/v1/line-items/{world['mine']['line_item']['id']}/creatives",
            headers=key,
            json={"creative_id": theirs["creative"]["id"]},
        )
        assert steal.status_code == 404
        assert client.post("/v1/advertisers", json={"name": "new"}, headers=key).status_code == 403
        assert (
            client.post(
                "/v1/dimensions", json={"name": "d", "type": "number"}, headers=key
            ).status_code
            == 403
        )

    def test_can_manage_its_own_objects(self, client: TestClient, world: dict[str, Any]) -> None:
        key = world["key"]
        mine = world["mine"]
        camp = client.post(
            "/v1/campaigns",
            headers=key,
            json={
                "advertiser_id": mine["advertiser"]["id"],
                "name": "mine2",
                "budget_total": 5,
                **FLIGHT,
            },
        )
        assert camp.status_code == 201
        seg = client.post("/v1/segments", headers=key, json={"name": "own_seg", "kind": "list"})
        assert seg.status_code == 201 and seg.json()["advertiser_id"] == mine["advertiser"]["id"]
        patch = client.patch(
            f"/v1/line-items/{mine['line_item']['id']}", json={"bid_cpm": 9}, headers=key
        )
        assert patch.status_code == 200 and patch.json()["bid_cpm"] == 9


def test_keys_over_http_for_admins_only(client: TestClient, make_key: MakeKey) -> None:
    admin = bearer(make_key("admin"))
    made = client.post("/v1/keys", json={"role": "reader", "name": "bi"}, headers=admin)
    assert made.status_code == 201
    reader = bearer(made.json()["key"])
    assert client.get("/v1/advertisers", headers=reader).status_code == 200
    assert client.get("/v1/keys", headers=reader).status_code == 403
    listed = client.get("/v1/keys", headers=admin).json()["keys"]
    assert {k["role"] for k in listed} == {"admin", "reader"}
    assert all("key" not in k for k in listed)
    assert client.delete(f"/v1/keys/{made.json()['id']}", headers=admin).status_code == 200
    assert client.get("/v1/advertisers", headers=reader).status_code == 401
    bad = client.post("/v1/keys", json={"role": "advertiser"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "advertiser_id"
