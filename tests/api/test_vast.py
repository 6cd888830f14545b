"""``GET /v1/vast``: the same ad break as ``POST /v1/decisions``, as VAST 4 a player can read.

Read three ways: with ``xml.etree`` for the exact structure, against the IAB's VAST 4.2 XSD with
``xmlschema`` (the XSD is downloaded by ``.ci/run`` into tests/vast_xsd: its license grants no
redistribution, so it is not in the repository), and with a real player-side client
(``@dailymotion/vast-client`` under Node.js, installed by ``.ci/run`` into tests/vast_client).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from fastapi import FastAPI

from adtarget.api.container import container_of

from .conftest import FLIGHT, TestClient

CLIENT_DIR = Path(__file__).resolve().parents[1] / "vast_client"
XSD = Path(__file__).resolve().parents[1] / "vast_xsd" / "vast_4.2.xsd"
NS = {"": "http://www.iab.com/VAST"}  # every element is in the IAB's namespace


@pytest.fixture
def breaks(client: TestClient, app: FastAPI) -> dict[str, Any]:
    """Three advertisers (two in one category), 15 s and 30 s spots, all live for the US."""
    assert client.post("/v1/dimensions", json={"name": "country", "type": "category"}).is_success
    made: dict[str, Any] = {}
    for name, category, seconds, bid in (
        ("ford", "auto", 30, 20),
        ("kia", "auto", 15, 18),
        ("pepsi", None, 15, 10),
    ):
        adv = client.post("/v1/advertisers", json={"name": name, "category": category}).json()
        camp = client.post(
            "/v1/campaigns",
            json={"advertiser_id": adv["id"], "name": name, "budget_total": 1000, **FLIGHT},
        ).json()
        cr = client.post(
            "/v1/creatives",
            json={
                "advertiser_id": adv["id"],
                "name": f"{name} spot",
                "format": "video_30s" if seconds == 30 else "video_15s",
                "attributes": {
                    "media_url": f"https://cdn.example.com/{name}.mp4?a=1&b=2",
                    "duration": seconds,
                },
            },
        ).json()
        li = client.post(
            "/v1/line-items",
            json={
                "campaign_id": camp["id"],
                "name": name,
                "targeting": 'country = "US"',
                "priority": 1,
                "bid_cpm": bid,
            },
        ).json()
        client.post(f"/v1/line-items/{li['id']}/creatives", json={"creative_id": cr["id"]})
        assert client.patch(f"/v1/line-items/{li['id']}", json={"status": "active"}).is_success
        assert client.patch(f"/v1/campaigns/{camp['id']}", json={"status": "active"}).is_success
        made[name] = {"line_item": li, "creative": cr}
    container_of(app).decisions.engine.index_holder.refresh()
    return made


def _vast(client: TestClient, **params: Any) -> ET.Element:
    resp = client.get("/v1/vast", params=params)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/xml")
    return ET.fromstring(resp.content)


def test_a_break_as_vast_matches_the_json_answer_and_its_urls_count(
    client: TestClient, app: FastAPI, breaks: dict[str, Any]
) -> None:
    root = _vast(client, user_id="u1", slots=3, max_duration=60, country="US")
    assert root.tag == "{http://www.iab.com/VAST}VAST" and root.get("version") == "4.2"
    ads = root.findall("Ad", NS)
    # ford (30 s, auto) first; kia kept out by ford's category; pepsi's 15 s fits
    assert [a.get("id") for a in ads] == [
        str(breaks["ford"]["line_item"]["id"]),
        str(breaks["pepsi"]["line_item"]["id"]),
    ]
    assert [a.get("sequence") for a in ads] == ["1", "2"]
    first = ads[0].find("InLine", NS)
    assert first is not None
    assert first.findtext("AdSystem", namespaces=NS) == "adtarget"
    linear = first.find("Creatives/Creative/Linear", NS)
    assert linear is not None and linear.findtext("Duration", namespaces=NS) == "00:00:30.000"
    media = linear.find("MediaFiles/MediaFile", NS)
    assert media is not None and media.text == "https://cdn.example.com/ford.mp4?a=1&b=2"
    assert media.get("type") == "video/mp4"
    events = {t.get("event"): t.text for t in linear.findall("TrackingEvents/Tracking", NS)}
    assert set(events) == {"start", "firstQuartile", "midpoint", "thirdQuartile", "complete"}
    impression = first.findtext("Impression", namespaces=NS)
    assert impression is not None and impression.startswith("/v1/track/impression/")
    assert client.get(impression).status_code == 204  # the signed URLs are real beacons
    assert client.get(events["complete"] or "").status_code == 204
    container = container_of(app)
    assert container.beacons is not None
    container.beacons.flush()  # this worker's answered beacons into the event log
    rows = container.event_store.scan().to_pylist()
    assert sorted(r["type"] for r in rows) == ["complete", "impression"]
    assert {r["event_id"].split(".")[0] for r in rows} == {
        first.findtext("AdServingId", namespaces=NS)
    }


def test_a_creative_without_media_never_takes_a_vast_slot(
    client: TestClient, app: FastAPI, breaks: dict[str, Any]
) -> None:
    """Ford's spot loses its media URL: the JSON break still shows it first (an ad server may
    have its own media), but the VAST break — which could not play it — fills its place with
    the next playable ad instead of answering one ``<Ad>`` short."""
    ford = breaks["ford"]
    assert client.patch(
        f"/v1/creatives/{ford['creative']['id']}", json={"attributes": {"duration": 30}}
    ).is_success
    container_of(app).decisions.engine.index_holder.refresh()
    body = {"user_id": "u9", "context": {"country": "US"}, "explain": True}
    plain = client.post("/v1/decisions", json={**body, "pod": {"slots": 3, "max_duration": 60}})
    assert plain.status_code == 200, plain.text
    assert plain.json()["decisions"][0]["line_item_id"] == ford["line_item"]["id"]
    playable = client.post(
        "/v1/decisions", json={**body, "pod": {"slots": 3, "max_duration": 60, "playable": True}}
    ).json()
    assert [d["line_item_id"] for d in playable["decisions"]] == [
        breaks["kia"]["line_item"]["id"],  # ford's category no longer blocks kia
        breaks["pepsi"]["line_item"]["id"],
    ]
    skipped = {e["line_item_id"]: e["reason"] for e in playable["explain"]["not_served"]}
    assert skipped[ford["line_item"]["id"]] == "no_media"
    root = _vast(client, user_id="u10", slots=3, max_duration=60, country="US")
    assert [a.get("id") for a in root.findall("Ad", NS)] == [
        str(breaks["kia"]["line_item"]["id"]),
        str(breaks["pepsi"]["line_item"]["id"]),
    ]
    bad = client.post(
        "/v1/decisions", json={**body, "pod": {"slots": 1, "max_duration": 9, "playable": 1}}
    )
    assert bad.status_code == 422 and "pod.playable" in bad.text


def test_nothing_to_serve_is_an_empty_vast_and_a_bad_query_a_422(
    client: TestClient, breaks: dict[str, Any]
) -> None:
    empty = _vast(client, user_id="u1", slots=2, max_duration=60, country="FR")
    assert empty.tag == "{http://www.iab.com/VAST}VAST" and list(empty) == []
    bad = client.get("/v1/vast", params={"user_id": "u1", "slots": 0, "max_duration": 60})
    assert bad.status_code == 422 and "slots" in bad.text
    missing = client.get("/v1/vast", params={"user_id": "u1"})
    assert missing.status_code == 422 and "max_duration" in missing.text


@pytest.mark.skipif(
    not XSD.exists(), reason="tests/vast_xsd/vast_4.2.xsd missing (.ci/run downloads it)"
)
def test_filled_partial_and_empty_breaks_are_valid_vast_4_2(
    client: TestClient, app: FastAPI, breaks: dict[str, Any]
) -> None:
    import xmlschema

    schema = xmlschema.XMLSchema(XSD)
    # a creative with its optional attributes, and one whose width is not a number
    client.patch(
        f"/v1/creatives/{breaks['ford']['creative']['id']}",
        json={
            "attributes": {
                "media_url": "https://cdn.example.com/ford.webm",
                "duration": 30,
                "width": 1280,
                "height": 720,
                "bitrate": 4000,
                "click_url": "https://ford.example/?a=1&b=2",
                "title": "Ford <spring> & co",
            }
        },
    )
    client.patch(
        f"/v1/creatives/{breaks['pepsi']['creative']['id']}",
        json={"attributes": {"media_url": "https://cdn.example.com/p.mp4", "duration": 15,
                             "width": "wide"}},
    )  # fmt: skip
    container_of(app).decisions.engine.index_holder.refresh()
    cases = {  # query -> ads expected
        "filled": ({"slots": 2, "max_duration": 45}, 2),
        "partial": ({"slots": 3, "max_duration": 60}, 2),  # kia shares ford's category
        "empty": ({"slots": 2, "max_duration": 60, "country": "FR"}, 0),
    }
    for name, (query, n_ads) in cases.items():
        params = {"user_id": f"u-{name}", "country": "US", **query}
        xml = client.get("/v1/vast", params=params).content
        errors = [f"{e.path}: {e.reason}" for e in schema.iter_errors(xml.decode())]
        assert errors == [], (name, errors, xml)
        assert len(ET.fromstring(xml).findall("Ad", NS)) == n_ads, name
    break_ = client.post(
        "/v1/decisions",
        json={"user_id": "u-json", "context": {"country": "US"}, "pod": {"slots": 3,
              "max_duration": 60}, "explain": True},
    ).json()  # fmt: skip
    assert break_["pod"]["unfilled"], break_  # the partial break says why a slot is empty


@pytest.mark.skipif(
    shutil.which("node") is None or not (CLIENT_DIR / "node_modules").exists(),
    reason="Node.js or tests/vast_client/node_modules missing (.ci/run installs it with npm)",
)
def test_a_real_player_side_vast_client_reads_the_break(
    client: TestClient, breaks: dict[str, Any]
) -> None:
    xml = client.get(
        "/v1/vast", params={"user_id": "u1", "slots": 3, "max_duration": 60, "country": "US"}
    ).content
    out = subprocess.run(
        ["node", str(CLIENT_DIR / "read_vast.js")],
        input=xml,
        capture_output=True,
        timeout=60,
        check=True,
        cwd=CLIENT_DIR,
    )
    read = json.loads(out.stdout)
    assert read["version"] == "4.2"
    assert [a["sequence"] for a in read["ads"]] == ["1", "2"]
    ford, pepsi = (a["creatives"][0] for a in read["ads"])
    assert ford["type"] == "linear" and ford["duration"] == 30 and pepsi["duration"] == 15
    assert ford["media"][0]["url"] == "https://cdn.example.com/ford.mp4?a=1&b=2"
    assert set(ford["tracking"]) >= {"start", "firstQuartile", "midpoint", "thirdQuartile"}
    assert ford["tracking"]["complete"][0].startswith("/v1/track/complete/")
    assert ford["clickTracking"][0].startswith("/v1/track/click/")
    assert read["ads"][0]["impressions"][0].startswith("/v1/track/impression/")
