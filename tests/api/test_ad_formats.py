"""`/v1/ad-formats`: every catalog role reads, admins add, errors name the field."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

BUMPER = {
    "name": "bumper_6s",
    "media": "video",
    "description": "6 s unskippable",
    "json_schema": {
        "type": "object",
        "properties": {"duration_s": {"type": "number", "maximum": 6}},
        "required": ["duration_s"],
    },
}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_admins_add_a_format_and_creatives_use_it_at_once(
    client: TestClient, make_key: Callable[..., str]
) -> None:
    admin = _bearer(make_key("admin"))
    listed = client.get("/v1/ad-formats", headers=admin)
    assert listed.status_code == 200
    assert "video_15s" in {f["name"] for f in listed.json()["ad_formats"]}
    made = client.post("/v1/ad-formats", json=BUMPER, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["json_schema"] == BUMPER["json_schema"] and made.json()["added_at"]
    assert client.get("/v1/ad-formats/bumper_6s", headers=admin).json()["media"] == "video"
    adv = client.post("/v1/advertisers", json={"name": "acme"}, headers=admin).json()

    def bumper(duration_s: float) -> int:
        body = {"advertiser_id": adv["id"], "name": "b", "format": "bumper_6s"}
        resp = client.post(
            "/v1/creatives", json={**body, "attributes": {"duration_s": duration_s}}, headers=admin
        )
        assert duration_s <= 6 or "duration_s" in resp.text
        return resp.status_code

    assert bumper(7) == 422  # validated against the new format's schema at once
    assert bumper(6) == 201


def test_bad_and_duplicate_formats_are_refused_naming_the_field(
    client: TestClient, make_key: Callable[..., str]
) -> None:
    admin = _bearer(make_key("admin"))
    assert client.post("/v1/ad-formats", json=BUMPER, headers=admin).status_code == 201
    again = client.post("/v1/ad-formats", json=BUMPER, headers=admin)
    assert again.status_code == 409 and again.json()["error"]["field"] == "name"
    bad_schema = client.post(
        "/v1/ad-formats",
        json={**BUMPER, "name": "odd", "json_schema": {"type": "nonsense"}},
        headers=admin,
    )
    assert bad_schema.status_code == 422
    assert "json_schema" in bad_schema.json()["error"]["field"]
    bad_name = client.post("/v1/ad-formats", json={**BUMPER, "name": "Has Space"}, headers=admin)
    assert bad_name.status_code == 422 and "name" in bad_name.text
    missing = client.get("/v1/ad-formats/nope_9", headers=admin)
    assert missing.status_code == 404 and "nope_9" in missing.text


def test_readers_and_advertisers_read_but_only_admins_add(
    client: TestClient, make_key: Callable[..., str]
) -> None:
    admin = _bearer(make_key("admin"))
    adv_id = client.post("/v1/advertisers", json={"name": "acme"}, headers=admin).json()["id"]
    for key in (make_key("reader"), make_key("advertiser", adv_id)):
        assert client.get("/v1/ad-formats", headers=_bearer(key)).status_code == 200
        refused = client.post("/v1/ad-formats", json=BUMPER, headers=_bearer(key))
        assert refused.status_code == 403
    ad_server = client.get("/v1/ad-formats", headers=_bearer(make_key("decisions")))
    assert ad_server.status_code == 403
