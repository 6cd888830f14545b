"""HTTP routes: /v1/audiences/{size,overlap,export}, /v1/snapshots, /v1/snapshots/rollback."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from itertools import product

import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from tests.audience.conftest import build, population

from adtarget.api.app import create_app
from adtarget.api.auth import create_key
from adtarget.api.deps import app_key_resolver, app_session_factory
from adtarget.api.routes import audiences
from adtarget.audience.store import SnapshotStore
from adtarget.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def app(settings: Settings, started: Callable[..., TestClient]) -> FastAPI:
    app = create_app(settings)
    if not any(getattr(r, "path", "") == "/v1/audiences/size" for r in app.routes):
        app.include_router(audiences.router)
    started(app)
    return app


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def users(settings: Settings) -> list[dict]:
    users = population(500, seed=2)
    store = SnapshotStore(settings.snapshots_dir)
    build(store, population(50, seed=1))
    build(store, users)
    return users


def test_no_snapshot_is_404(client: TestClient) -> None:
    r = client.post("/v1/audiences/size", json={"rule": "premium = true"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_size_and_threshold(client: TestClient, users: list[dict]) -> None:
    r = client.post("/v1/audiences/size", json={"rule": "not premium = true"})
    assert r.status_code == 200
    want = sum(1 for u in users if u.get("premium") is not True)
    assert r.json() == {"count": want, "snapshot": "v000002"}
    r = client.post(
        "/v1/audiences/size", json={"rule": 'country = "US" and device = "web" and premium = true'}
    )
    assert r.status_code == 200
    assert r.json()["count"] is None and r.json()["below_threshold"] is True


def test_bad_rule_is_422_naming_the_token(client: TestClient, users: list[dict]) -> None:
    r = client.post("/v1/audiences/size", json={"rule": 'cuntry = "US"'})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "rule_invalid" and "cuntry" in err["message"]
    assert err["field"] == "rule"
    r = client.post("/v1/audiences/size", json={"rule": "age >"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert (err["code"], err["field"], err["column"]) == ("rule_syntax", "rule", 6)
    assert "column 6" in err["message"]
    r = client.post("/v1/audiences/overlap", json={"rules": ["age > 1", "age >"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "rule"


def test_overlap_matrix(client: TestClient, users: list[dict]) -> None:
    r = client.post(
        "/v1/audiences/overlap",
        json={"rules": ["premium = false", "not premium = true", "age > 1"]},
    )
    assert r.status_code == 200
    body = r.json()
    assert len(body["matrix"]) == 3 and all(len(row) == 3 for row in body["matrix"])
    assert body["matrix"][0][1] == body["matrix"][1][0] == body["sizes"][0]
    tiny = 'country = "US" and device = "web" and premium = true'
    body = client.post("/v1/audiences/overlap", json={"rules": ["age > 1", tiny]}).json()
    assert body["matrix"][0][1] is None and body["matrix"][1][1] is None
    assert body["below_threshold"] == [[False, True], [True, True]]


def test_export_csv_and_parquet(client: TestClient, users: list[dict]) -> None:
    want = {u["user_id"] for u in users if u.get("premium") is not True}
    r = client.post("/v1/audiences/export", json={"rule": "not premium = true"})
    assert r.status_code == 200 and r.headers["x-adtarget-count"] == str(len(want))
    lines = r.text.strip().splitlines()
    assert lines[0].strip('"') == "user_id"
    assert {line.strip('"') for line in lines[1:]} == want
    r = client.post(
        "/v1/audiences/export", json={"rule": "not premium = true", "format": "parquet"}
    )
    assert r.status_code == 200
    assert set(pq.read_table(io.BytesIO(r.content)).column("user_id").to_pylist()) == want
    tiny = 'country = "US" and device = "web" and premium = true'
    r = client.post("/v1/audiences/export", json={"rule": tiny})
    assert r.status_code == 422 and "below the minimum size" in r.json()["error"]["message"]
    r = client.post("/v1/audiences/export", json={"rule": "age > 1", "format": "xml"})
    assert r.status_code == 422


def test_snapshots_list_and_rollback(client: TestClient, users: list[dict]) -> None:
    r = client.get("/v1/snapshots")
    assert r.status_code == 200 and r.json()["current"] == "v000002"
    assert [s["version"] for s in r.json()["snapshots"]] == ["v000002", "v000001"]
    r = client.post("/v1/snapshots/rollback", json={"version": "v000001"})
    assert r.status_code == 200 and r.json() == {"current": "v000001"}
    r = client.post("/v1/audiences/size", json={"rule": "not premium = true"})
    assert r.json()["snapshot"] == "v000001"
    r = client.post("/v1/snapshots/rollback", json={"version": "v000099"})
    assert r.status_code == 404


def test_reader_key_may_size_but_not_roll_back(
    app: FastAPI, client: TestClient, users: list[dict]
) -> None:
    with app_session_factory(app)() as session, session.begin():
        _row, key = create_key(session=session, role="reader")
    app_key_resolver(app).invalidate()
    h = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/audiences/size", json={"rule": "age > 1"}, headers=h).status_code == 200
    r = client.post("/v1/snapshots/rollback", json={"version": "v000001"}, headers=h)
    assert r.status_code == 403
    assert client.post("/v1/audiences/size", json={"rule": "age > 1"}).status_code == 401


def test_size_is_answered_by_the_raw_handler_with_fastapis_errors(
    client: TestClient, users: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    raw = audiences.size_asgi

    async def spy(scope, receive, send):  # type: ignore[no-untyped-def]
        calls.append(scope["path"])
        await raw(scope, receive, send)

    monkeypatch.setattr(audiences, "size_asgi", spy)
    ok = client.post("/v1/audiences/size", json={"rule": "not premium = true"})
    assert ok.status_code == 200 and calls == ["/v1/audiences/size"]
    assert (
        ok.json()["count"]
        == client.post("/v1/audiences/overlap", json={"rules": ["not premium = true"]}).json()[
            "sizes"
        ][0]
    )
    # the same bad bodies give the same answers as FastAPI's validation on the overlap route
    pairs = [
        (b"{", b"{"),
        (b"", b""),
        (b"{}", b"{}"),
        (b'{"rule": 3}', b'{"rules": [3]}'),
        (b"[]", b"[]"),
    ]
    for (size_body, overlap_body), ctype in product(
        pairs, [None, "application/json", "application/x+json", "text/plain"]
    ):
        headers = {"content-type": ctype} if ctype else {}
        a = client.post("/v1/audiences/size", content=size_body, headers=headers)
        b = client.post("/v1/audiences/overlap", content=overlap_body, headers=headers)
        assert a.status_code == b.status_code, (size_body, ctype, a.json(), b.json())
        assert a.json()["error"]["code"] == b.json()["error"]["code"]
    assert client.get("/v1/audiences/size").status_code == 405
    assert client.post("/v1/audiences/size", json={}).json()["error"]["field"] == "rule"
