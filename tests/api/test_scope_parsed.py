"""Authorization on the parsed rule: bodies FastAPI accepts but a second parser would not (NaN,
Infinity, a lone surrogate, a UTF-8 BOM) cannot reach another advertiser's segment, and a hidden
segment answers exactly as a missing one, in every way a rule can arrive."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.audience.conftest import build, population, to_batch
from tests.rules.strategies import REGISTRY, SEGMENTS

from adtarget.audience.build import SnapshotBuilder
from adtarget.audience.store import SnapshotStore
from adtarget.rules.ast import SEGMENTS_FIELD
from adtarget.settings import Settings

MakeKey = Callable[..., str]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def world(client: TestClient, make_key: MakeKey, settings: Settings) -> dict[str, Any]:
    """Advertisers A and B; B owns list segment ``s1`` (~150 of 500 users in the snapshot)."""
    build(SnapshotStore(settings.snapshots_dir), population(500, seed=2))
    admin = bearer(make_key("admin"))
    a = client.post("/v1/advertisers", json={"name": "A"}, headers=admin).json()
    b = client.post("/v1/advertisers", json={"name": "B"}, headers=admin).json()
    seg = client.post(
        "/v1/segments",
        json={"name": "s1", "kind": "list", "advertiser_id": b["id"]},
        headers=admin,
    )
    assert seg.status_code == 201, seg.text
    camp = client.post(
        "/v1/campaigns",
        json={
            "advertiser_id": a["id"],
            "name": "c",
            "budget_total": 10,
            "start": "2026-01-01T00:00:00Z",
            "end": "2030-01-01T00:00:00Z",
        },
        headers=admin,
    ).json()
    return {
        "admin": admin,
        "a": bearer(make_key("advertiser", a["id"])),
        "reader": bearer(make_key("reader")),
        "campaign": camp,
        "segment": seg.json(),
    }


HOSTILE = [
    b'{"rule": "segment(\\"s1\\")", "x": NaN}',
    b'{"rule": "segment(\\"s1\\")", "x": Infinity}',
    b'{"rule": "segment(\\"s1\\")", "x": "\\ud800"}',
    b'\xef\xbb\xbf{"rule": "segment(\\"s1\\")"}',
]


@pytest.mark.parametrize("body", HOSTILE, ids=["nan", "infinity", "surrogate", "bom"])
@pytest.mark.parametrize("path", ["/v1/audiences/export", "/v1/audiences/size"])
def test_bodies_another_parser_refuses_cannot_bypass_scope(
    client: TestClient, world: dict[str, Any], path: str, body: bytes
) -> None:
    headers = {**world["a"], "Content-Type": "application/json"}
    resp = client.post(path, content=body, headers=headers)
    assert resp.status_code != 200, resp.text[:200]
    assert "user-" not in resp.text
    missing = client.post(path, content=body.replace(b"s1", b"s9"), headers=headers)
    assert (resp.status_code, resp.text) == (missing.status_code, missing.text.replace("s9", "s1"))


def test_every_way_a_rule_arrives_answers_as_missing(
    client: TestClient, world: dict[str, Any]
) -> None:
    a = world["a"]
    li = {"campaign_id": world["campaign"]["id"], "name": "li", "priority": 1, "bid_cpm": 1}

    def seg_rule(name: str) -> str:
        return f'segment("{name}")'

    attempts: list[tuple[str, str, Callable[[str], Any]]] = [
        ("POST", "/v1/audiences/size", lambda s: {"rule": f'segment("{s}")'}),
        ("POST", "/v1/audiences/size", lambda s: {"rule": {"op": "segment", "name": s}}),
        ("POST", "/v1/audiences/overlap", lambda s: {"rules": ["age > 1", f'segment("{s}")']}),
        ("POST", "/v1/audiences/overlap", lambda s: {"rules": [{"op": "segment", "name": s}]}),
        ("POST", "/v1/audiences/export", lambda s: {"rule": f'not segment("{s}")'}),
        ("POST", "/v1/line-items", lambda s: {**li, "targeting": f'segment("{s}")'}),
        ("POST", "/v1/segments", lambda s: {"name": "w", "kind": "rule", "rule": seg_rule(s)}),
    ]
    for method, path, body in attempts:
        hidden = client.request(method, path, json=body("s1"), headers=a)
        missing = client.request(method, path, json=body("s9"), headers=a)
        assert hidden.status_code == 422, (path, hidden.text)
        assert hidden.json()["error"]["code"] == "rule_invalid", (path, hidden.text)
        assert hidden.text == missing.text.replace("s9", "s1"), path
        assert "s1" not in missing.text  # never offered as "did you mean"
    # An admin still sizes it.
    ok = client.post("/v1/audiences/size", json={"rule": 'segment("s1")'}, headers=world["admin"])
    assert ok.status_code == 200 and ok.json()["count"] > 100


def test_readers_size_but_do_not_export(client: TestClient, world: dict[str, Any]) -> None:
    reader = world["reader"]
    assert client.post("/v1/audiences/size", json={"rule": "age > 1"}, headers=reader).is_success
    resp = client.post("/v1/audiences/export", json={"rule": "age > 1"}, headers=reader)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"


def test_names_do_not_leak_across_advertisers(client: TestClient, world: dict[str, Any]) -> None:
    a = world["a"]
    snaps = client.get("/v1/snapshots", headers=a).json()["snapshots"]
    assert all("s1" not in s["segments"] for s in snaps)
    everything = client.get("/v1/snapshots", headers=world["admin"]).json()["snapshots"]
    assert any("s1" in s["segments"] for s in everything)
    taken = client.post("/v1/segments", json={"name": "s1", "kind": "list"}, headers=a)
    assert taken.status_code == 409
    assert str(world["segment"]["id"]) not in taken.text and "existing_id" not in taken.text


@pytest.mark.parametrize(
    "field",
    [{"last_size": 100000}, {"last_snapshot": "v000009"}, {"last_computed_at": "2030-01-01"}],
)
def test_derived_segment_fields_are_read_only(
    client: TestClient, world: dict[str, Any], field: dict[str, Any]
) -> None:
    seg = world["segment"]
    resp = client.patch(f"/v1/segments/{seg['id']}", json=field, headers=world["admin"])
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == next(iter(field))
    after = client.get(f"/v1/segments/{seg['id']}", headers=world["admin"]).json()
    assert after["last_size"] == seg["last_size"]


def test_forecast_authorizes_the_rule_it_forecasts(
    client: TestClient, world: dict[str, Any]
) -> None:
    """The forecaster's own compiled rule is checked: a proposal, changes to a line item, and a
    line item whose stored targeting names a segment the key may not see (an admin wrote it)
    answer as a missing segment would, never 200 and never 5xx."""
    a, admin, camp = world["a"], world["admin"], world["campaign"]
    flight = {"start": "2029-01-01T00:00:00Z", "end": "2029-01-02T00:00:00Z"}
    proposal = {"campaign_id": camp["id"], "priority": 8, "bid_cpm": 1, **flight}
    li = client.post(
        "/v1/line-items",
        json={
            "campaign_id": camp["id"],
            "name": "li",
            "priority": 1,
            "bid_cpm": 1,
            "targeting": 'segment("s1")',
        },  # fmt: skip
        headers=admin,
    )
    assert li.status_code == 201, li.text
    plain = client.post(
        "/v1/line-items",
        json={"campaign_id": camp["id"], "name": "li2", "priority": 1, "bid_cpm": 1},
        headers=admin,
    ).json()
    attempts: list[tuple[dict[str, Any], str]] = [
        ({**proposal, "targeting": 'segment("s1")'}, "targeting"),
        ({**proposal, "targeting": ' not segment("s1") '}, "targeting"),
        (
            {"line_item_id": plain["id"], "changes": {"targeting": 'segment("s1")'}},
            "changes.targeting",
        ),
        ({"line_item_id": li.json()["id"], "changes": {"bid_cpm": 2}}, "targeting"),
        ({"line_item_id": li.json()["id"]}, "targeting"),
    ]
    for body, field in attempts:
        resp = client.post("/v1/forecast", json=body, headers=a)
        assert resp.status_code == 422, (body, resp.text)
        err = resp.json()["error"]
        assert err["code"] == "rule_invalid" and err["field"] == field, (body, resp.text)
        assert "s1" in err["message"], resp.text  # names the segment, as a missing one
    # An admin forecasts it; so does the key with a segment it may see.
    ok = client.post("/v1/forecast", json={"line_item_id": li.json()["id"]}, headers=admin)
    assert ok.status_code == 200, ok.text
    mine = client.post("/v1/segments", json={"name": "s2", "kind": "list"}, headers=a)
    assert mine.status_code == 201, mine.text
    own = client.post("/v1/forecast", json={**proposal, "targeting": 'segment("s2")'}, headers=a)
    assert own.status_code == 200, own.text


def _publish_with_rule_segment(settings: Settings, name: str, rule: str) -> None:
    """Publish a snapshot of the same users with ``name`` materialized as a bitmap, as an
    upload does for every catalog rule segment."""
    store = SnapshotStore(settings.snapshots_dir)
    users = population(500, seed=2)
    b = SnapshotBuilder(store=store, base=None, registry=REGISTRY, mode="replace")
    b.add_batch(to_batch(users))
    for seg in SEGMENTS:
        b.set_segment(seg, [u["user_id"] for u in users if seg in u.get(SEGMENTS_FIELD, ())])
    b.add_rule_segment(name, rule)
    store.publish(b.finish())


def test_a_visible_rule_segment_cannot_carry_a_hidden_one(
    client: TestClient, world: dict[str, Any], settings: Settings
) -> None:
    """Authorization on the rule as it is evaluated, i.e. with rule segments expanded: the key's
    own rule segment ``w`` and a global one ``g`` whose stored rules (written by an admin) read
    B's private ``s1`` are refused wherever a rule arrives, naming both segments, with the
    segment inlined and with it materialized in the snapshot; an admin still uses them."""
    a, admin, camp = world["a"], world["admin"], world["campaign"]
    a_id = camp["advertiser_id"]
    for body in (
        {"name": "w", "kind": "rule", "rule": 'segment("s1")', "advertiser_id": a_id},
        {"name": "g", "kind": "rule", "rule": 'not segment("s1")'},
        {"name": "s2", "kind": "list", "advertiser_id": a_id},
    ):
        made = client.post("/v1/segments", json=body, headers=admin)
        assert made.status_code == 201, made.text
    own = client.post(
        "/v1/segments", json={"name": "r", "kind": "rule", "rule": 'segment("s2")'}, headers=a
    )
    assert own.status_code == 201, own.text
    li = {"campaign_id": camp["id"], "name": "li", "priority": 1, "bid_cpm": 1}
    made_li = client.post("/v1/line-items", json=li, headers=a)
    assert made_li.status_code == 201, made_li.text
    flight = {"start": "2029-01-01T00:00:00Z", "end": "2029-01-02T00:00:00Z"}
    proposal = {"campaign_id": camp["id"], "priority": 8, "bid_cpm": 1, **flight}

    def attempts(s: str) -> list[tuple[str, str, dict[str, Any], str]]:
        return [
            ("POST", "/v1/audiences/size", {"rule": f'segment("{s}")'}, "rule"),
            ("POST", "/v1/audiences/size", {"rule": {"op": "segment", "name": s}}, "rule"),
            ("POST", "/v1/audiences/overlap", {"rules": ["age > 1", f'segment("{s}")']}, "rule"),
            ("POST", "/v1/audiences/export", {"rule": f'not segment("{s}")'}, "rule"),
            ("POST", "/v1/line-items", {**li, "targeting": f'segment("{s}")'}, "targeting"),
            (
                "PATCH",
                f"/v1/line-items/{made_li.json()['id']}",
                {"targeting": f'segment("{s}")'},
                "targeting",
            ),
            (
                "POST",
                "/v1/segments",
                {"name": "w2", "kind": "rule", "rule": f'segment("{s}")'},
                "rule",
            ),
            (
                "PATCH",
                f"/v1/segments/{own.json()['id']}",
                {"rule": f'segment("s2") or segment("{s}")'},
                "rule",
            ),
            ("POST", "/v1/forecast", {**proposal, "targeting": f'segment("{s}")'}, "targeting"),
        ]

    def refused_everywhere(name: str) -> None:
        for method, path, body, field in attempts(name):
            resp = client.request(method, path, json=body, headers=a)
            assert resp.status_code == 422, (method, path, name, resp.text)
            err = resp.json()["error"]
            assert err["code"] == "rule_invalid" and err["field"] == field, (path, resp.text)
            assert f"'{name}'" in err["message"] and "'s1'" in err["message"], resp.text
            assert "user-" not in resp.text

    refused_everywhere("w")
    refused_everywhere("g")
    # Nested one level deeper: an own rule segment the admin pointed at ``w``.
    deeper = client.post(
        "/v1/segments",
        json={"name": "w3", "kind": "rule", "rule": 'segment("w")', "advertiser_id": a_id},
        headers=admin,
    )
    assert deeper.status_code == 201, deeper.text
    resp = client.post("/v1/audiences/size", json={"rule": 'segment("w3")'}, headers=a)
    assert resp.status_code == 422 and "w3 -> w -> s1" in resp.text, resp.text
    # Materialized in the snapshot (as an upload does), it is read as a bitmap, not inlined.
    _publish_with_rule_segment(settings, "w", 'segment("s1")')
    refused_everywhere("w")
    # An admin uses them; the key still uses its own segments.
    ok = client.post("/v1/audiences/size", json={"rule": 'segment("w")'}, headers=admin)
    assert ok.status_code == 200 and ok.json()["count"] > 100, ok.text
    mine = client.post("/v1/audiences/size", json={"rule": 'segment("r")'}, headers=a)
    assert mine.status_code == 200, mine.text
