"""The published contract: a bearer scheme Swagger can authorize with, the error body as sent,
and the statuses every route can answer."""

from __future__ import annotations

import jsonschema
from fastapi.testclient import TestClient


def test_bearer_scheme_and_real_error_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert spec["security"] == [{"bearer": []}]
    error = spec["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) == {"code", "message", "field"}
    assert "HTTPValidationError" not in str(spec)
    post = spec["paths"]["/v1/campaigns"]["post"]["responses"]
    for status in ("401", "403", "404", "409", "422", "503"):
        ref = post[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/Error"
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_a_real_error_matches_the_published_body(client: TestClient) -> None:
    body = client.post("/v1/campaigns", json={"name": "x"}).json()
    assert set(body) == {"error"} and {"code", "message", "field"} <= set(body["error"])


def test_decision_bodies_the_schema_allows_are_answered(client: TestClient) -> None:
    """The published decision body is what the raw route accepts: an integer ``user_id`` and a
    null ``context`` validate against the schema and get a 200, never a 4xx or 5xx."""
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/decisions"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[1]
    schema = {**spec["components"]["schemas"][name], "components": spec["components"]}
    validator = jsonschema.Draft202012Validator(schema)
    bodies = [
        {"user_id": 7, "context": None},
        {"user_id": "u1", "context": None, "limit": 2},
        {"user_id": 0, "context": {"country": "FR", "tags": ["a"], "n": 1.5, "x": None}},
    ]
    for body in bodies:
        validator.validate(body)  # the schema allows it...
        resp = client.post("/v1/decisions", json=body)
        assert resp.status_code == 200, (body, resp.text)  # ...and so does the route
    # What the route refuses, the schema refuses too.
    for bad in ({"user_id": True}, {"user_id": "u", "context": []}, {"user_id": "x" * 257}):
        assert not validator.is_valid(bad), bad
        assert client.post("/v1/decisions", json=bad).status_code == 422
