"""The published contract: a bearer scheme Swagger can authorize with, the error body as sent,
and the statuses every route can answer."""

from __future__ import annotations

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
