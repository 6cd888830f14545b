"""The API routes the console needs: who am I, upload listing and rejected rows, rule
vocabulary, a line item's creatives; and ``/console`` itself (served from the package)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from .conftest import _seed_advertiser


def _upload(
    client: TestClient, body: str, headers: dict[str, str], **fields: str
) -> dict[str, Any]:
    res = client.post(
        "/v1/uploads",
        files={"file": ("pop.csv", body.encode(), "text/csv")},
        data={"mode": "replace", "schema": '{"country": "category", "age": "number"}', **fields},
        headers=headers,
    )
    assert res.status_code == 202, res.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/uploads/{res.json()['id']}", headers=headers).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.02)
    raise AssertionError("upload did not finish")


def test_me_names_the_role_and_scope(client: TestClient, make_key: Callable[..., str]) -> None:
    assert client.get("/v1/me").json()["open"] is True  # no key exists yet
    adv = client.post("/v1/advertisers", json={"name": "a"}).json()
    key = make_key("advertiser", adv["id"])
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).json()
    assert (me["role"], me["advertiser_id"], me["open"]) == ("advertiser", adv["id"], False)
    assert client.get("/v1/me").status_code == 401  # keys exist now: no key, no answer


def test_uploads_are_listed_with_rejected_rows_and_reasons(
    client: TestClient, make_key: Callable[..., str]
) -> None:
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    rows = [f"u{i},US,{20 + i % 50}" for i in range(199)] + ["bad,FR,old"]
    job = _upload(client, "user_id,country,age\n" + "\n".join(rows) + "\n", admin)
    assert job["status"] == "succeeded", job["error"]
    listed = client.get("/v1/uploads", headers=admin).json()["uploads"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert listed[0]["report"]["total_rows"] is None or listed[0]["report"]["total_rows"] >= 0
    rejected = client.get(f"/v1/uploads/{job['id']}/rejected", headers=admin).json()
    assert rejected["total"] == 1
    assert rejected["rows"][0]["field"] == "age" and rejected["rows"][0]["reason"]
    reader = {"Authorization": f"Bearer {make_key('reader')}"}
    assert client.get("/v1/uploads", headers=reader).status_code == 200
    adv = client.post("/v1/advertisers", json={"name": "a"}, headers=admin).json()
    advertiser = {"Authorization": f"Bearer {make_key('advertiser', adv['id'])}"}
    assert client.get("/v1/uploads", headers=advertiser).status_code == 403
    missing = client.get("/v1/uploads/nope/rejected", headers=admin)
    assert missing.status_code == 404


def test_vocabulary_offers_uploaded_values_and_visible_segments(
    client: TestClient, make_key: Callable[..., str]
) -> None:
    empty = client.get("/v1/audiences/vocabulary").json()
    assert empty["snapshot"] is None and empty["dimensions"] == []
    rows = [f"u{i},{['US', 'CA', 'FR'][i % 3]},{18 + i % 60}" for i in range(300)]
    job = _upload(client, "user_id,country,age\n" + "\n".join(rows) + "\n", {})
    assert job["status"] == "succeeded", job["error"]
    one = _seed_advertiser(client, "one")
    two = _seed_advertiser(client, "two")
    vocab = client.get("/v1/audiences/vocabulary").json()
    dims = {d["name"]: d for d in vocab["dimensions"]}
    assert dims["country"]["values"] == ["CA", "FR", "US"]
    assert (dims["age"]["type"], dims["age"]["min"], dims["age"]["max"]) == ("number", 18, 77)
    assert {one["segment"]["name"], two["segment"]["name"]} <= set(vocab["segments"])
    shared = client.post("/v1/segments", json={"name": "shared_seg", "kind": "list"})
    assert shared.status_code == 201, shared.text
    for own, other in ((one, two), (two, one)):
        key = make_key("advertiser", own["advertiser"]["id"])
        scoped = client.get("/v1/audiences/vocabulary", headers={"Authorization": f"Bearer {key}"})
        assert scoped.status_code == 200, scoped.text
        assert scoped.json()["segments"] == sorted([own["segment"]["name"], "shared_seg"])
        assert other["segment"]["name"] not in scoped.json()["segments"]
    reader = make_key("reader")
    unscoped = client.get("/v1/audiences/vocabulary", headers={"Authorization": f"Bearer {reader}"})
    assert {one["segment"]["name"], two["segment"]["name"], "shared_seg"} <= set(
        unscoped.json()["segments"]
    )


def test_vocabulary_of_a_sharded_snapshot_is_the_union_of_its_shards(client: TestClient) -> None:
    rows = [f"u{i},{['US', 'CA', 'FR', 'JP'][i % 4]},{18 + i % 60}" for i in range(400)]
    job = _upload(client, "user_id,country,age\n" + "\n".join(rows) + "\n", {}, shards="3")
    assert job["status"] == "succeeded", job["error"]
    assert job["shards"] == 3
    dims = {d["name"]: d for d in client.get("/v1/audiences/vocabulary").json()["dimensions"]}
    assert dims["country"]["values"] == ["CA", "FR", "JP", "US"]
    assert (dims["age"]["min"], dims["age"]["max"]) == (18, 77)


def test_line_item_creatives_are_listed_in_scope(
    client: TestClient, make_key: Callable[..., str]
) -> None:
    one = _seed_advertiser(client, "one")
    two = _seed_advertiser(client, "two")
    li = one["line_item"]["id"]
    body = client.get(f"/v1/line-items/{li}/creatives").json()
    assert [c["id"] for c in body["creatives"]] == [one["creative"]["id"]]
    key = make_key("advertiser", two["advertiser"]["id"])
    foreign = client.get(
        f"/v1/line-items/{li}/creatives", headers={"Authorization": f"Bearer {key}"}
    )
    assert foreign.status_code == 404


def test_console_page_and_assets_come_from_the_package(client: TestClient) -> None:
    page = client.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "https://" not in page.text and "http://" not in page.text
    for asset in ("js/main.js", "js/audience.js", "console.css", "vendor/uPlot.iife.min.js"):
        res = client.get(f"/console/static/{asset}")
        assert res.status_code == 200 and res.content, asset
    assert client.get("/console/", follow_redirects=False).status_code == 308
