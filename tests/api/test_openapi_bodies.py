"""The hand-parsed routes publish their bodies as they really accept them: uploads (multipart or
JSON ``path``), event batches (JSON or NDJSON) and profile updates; what the published upload
options refuse, the route refuses with a 422 naming the field (never a 500, never a job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient


def _schema(spec: dict[str, Any], path: str, method: str, media: str) -> Any:
    body = spec["paths"][path][method]["requestBody"]
    assert body["required"] is True
    return jsonschema.Draft202012Validator(
        {**body["content"][media]["schema"], "components": spec["components"]}
    )


def test_upload_event_and_update_bodies_are_published(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    uploads = spec["paths"]["/v1/uploads"]["post"]
    assert set(uploads["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    form = uploads["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"
    assert set(uploads["responses"]) == {"202", "400", "401", "403", "413", "422", "503"}
    job = uploads["responses"]["202"]["content"]["application/json"]["schema"]
    assert {"id", "status", "rows_read"} <= set(job["required"])
    events = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert set(events) == {"application/json", "application/x-ndjson"}
    updates = spec["paths"]["/v1/profiles/updates"]["post"]
    assert "409" in updates["responses"] and "404" not in updates["responses"]
    for status in ("401", "422"):
        ref = updates["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/Error"


def test_bodies_the_schemas_allow_are_answered(client: TestClient, tmp_path: Path) -> None:
    spec = client.get("/openapi.json").json()
    client.post("/v1/dimensions", json={"name": "country", "type": "category"})
    events = _schema(spec, "/v1/events", "post", "application/json")
    batch = [
        {
            "event_id": 1,
            "type": "impression",
            "ts": "2026-12-01T10:00:00Z",
            "user_id": "u1",
            "line_item_id": "7",
            "cost": "0.5",
        }
    ]
    events.validate(batch)
    assert client.post("/v1/events", json=batch).status_code == 200
    updates = _schema(spec, "/v1/profiles/updates", "post", "application/json")
    body = {"updates": [{"update_id": "a", "user_id": "u1", "set": {"country": "US"}}]}
    updates.validate(body)
    assert client.post("/v1/profiles/updates", json=body).status_code == 200
    upload = _schema(spec, "/v1/uploads", "post", "application/json")
    users = tmp_path / "users.csv"
    users.write_text("user_id,country\nu1,US\n")
    ok = {"path": str(users), "ttl_seconds": 60, "mode": "segment", "segment": "s", "hashed": False}
    upload.validate(ok)
    assert client.post("/v1/uploads", json=ok).status_code == 202


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"schema": [1]}, "schema"),  # was a 500 (dict([1]))
        ({"schema": 5}, "schema"),
        ({"ttl_seconds": 10**30, "mode": "segment", "segment": "s"}, "ttl_seconds"),  # was 202
        ({"max_field_chars": 10**30}, "max_field_chars"),
        ({"delimiter": ";;"}, "delimiter"),  # a job that could only fail
        ({"dry_run": "maybe"}, "dry_run"),  # was silently false
        ({"shards": True}, "shards"),  # was 1
        ({"max_field_chars": 1.5}, "max_field_chars"),  # was 1
        ({"segment": "x" * 5000, "mode": "segment"}, "segment"),
    ],
)
def test_upload_options_the_schema_refuses_are_422s(
    client: TestClient, tmp_path: Path, options: dict[str, Any], field: str
) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user_id,country\nu1,US\n")
    spec = client.get("/openapi.json").json()
    body = {"path": str(users), **options}
    assert not _schema(spec, "/v1/uploads", "post", "application/json").is_valid(body)
    resp = client.post("/v1/uploads", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == field
    assert len(resp.json()["error"]["message"]) < 300
    assert client.get("/v1/uploads").json()["uploads"] == []  # no job was made


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"schema": "[1]"}, "schema"),  # was a 500
        ({"ttl_seconds": "99999999999999999999999", "mode": "segment"}, "ttl_seconds"),
        ({"hashed": "perhaps", "mode": "segment", "segment": "s"}, "hashed"),
    ],
)
def test_multipart_options_are_checked_the_same_way(
    client: TestClient, fields: dict[str, str], field: str
) -> None:
    resp = client.post(
        "/v1/uploads", files={"file": ("u.csv", b"user_id\nu1\n")}, data={**fields, "segment": "s"}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == field
