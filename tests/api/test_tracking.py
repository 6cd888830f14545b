"""Playable decisions and signed beacons (``API.md``, ad breaks and tracking), over HTTP.

A decision's tracking URLs are fired as a player would; the event log, ``/v1/reports`` and
``/metrics`` are read back. Every way of changing a URL — each payload field, the event in the
path, the key name, the signature — and a URL from another key or past its expiry is refused
with 403 and records nothing.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from adtarget.api.container import container_of
from adtarget.delivery import beacon_intake
from adtarget.delivery.beacon_intake import BeaconIntake
from adtarget.delivery.beacons import TRACKED_EVENTS, TrackingSigner
from adtarget.errors import StoreUnavailable
from adtarget.settings import Settings
from serving import free_port, wait_until_serving

from .conftest import TestClient, make_live


def _decide(client: TestClient, user: str = "u1", limit: int = 1) -> list[dict[str, Any]]:
    resp = client.post(
        "/v1/decisions",
        json={"user_id": user, "context": {"country": "US", "device": "tv"}, "limit": limit},
    )
    assert resp.status_code == 200, resp.text
    decisions: list[dict[str, Any]] = resp.json()["decisions"]
    assert decisions
    return decisions


@pytest.fixture
def live(client: TestClient, app: FastAPI) -> dict[str, Any]:
    made = make_live(client, [("us", 'country = "US"', 1), ("all", "", 3)])
    client.patch(
        f"/v1/creatives/{made['creative']['id']}",
        json={"attributes": {"media_url": "https://cdn.example/a.mp4", "duration": 15}},
    )
    container_of(app).decisions.engine.index_holder.refresh()
    return made


def _events(app: FastAPI) -> list[dict[str, Any]]:
    """The event log, once this worker's answered beacons are moved into it."""
    container = container_of(app)
    assert container.beacons is not None
    container.beacons.flush()
    rows: list[dict[str, Any]] = container.event_store.scan().to_pylist()
    return rows


def test_a_decision_is_playable_and_its_beacons_count_once(
    client: TestClient, app: FastAPI, live: dict[str, Any]
) -> None:
    first = _decide(client)[0]
    assert first["creative"] == {
        "id": live["creative"]["id"],
        "format": "video_15s",
        "attributes": {"media_url": "https://cdn.example/a.mp4", "duration": 15},
    }
    assert set(first["tracking"]) == set(TRACKED_EVENTS)
    for event in TRACKED_EVENTS:
        for _ in range(2):  # a player's retry
            resp = client.get(first["tracking"][event])
            assert resp.status_code == 204, resp.text
    rows = _events(app)
    assert sorted(r["type"] for r in rows) == sorted(TRACKED_EVENTS)
    assert {r["event_id"] for r in rows} == {f"{first['decision_id']}.{e}" for e in TRACKED_EVENTS}
    imp = next(r for r in rows if r["type"] == "impression")
    assert imp["user_id"] == "u1" and imp["line_item_id"] == str(live["us"]["id"])
    assert imp["campaign_id"] == str(live["campaign"]["id"])
    assert imp["creative_id"] == str(live["creative"]["id"])
    assert imp["country"] == "US" and imp["device"] == "tv"
    assert imp["cost_micros"] == 2_000  # bid 2.00 CPM: 0.002 per impression, on the impression
    assert all(r["cost_micros"] == 0 for r in rows if r["type"] != "impression")


def _signed(
    signer: TrackingSigner, live: dict[str, Any], now: float | None = None
) -> dict[str, str]:
    """URLs for the live US line item, signed by ``signer`` outside any decision."""
    return signer.urls(
        decision_id="e" * 24,
        line_item_id=live["us"]["id"],
        creative_id=live["creative"]["id"],
        campaign_id=live["campaign"]["id"],
        advertiser_id=1,
        user_id="u1",
        bid_cpm=2.0,
        context={},
        now=now,
    )


def _tampered(url: str, index: int) -> str:
    head, token = url.rsplit("/", 1)
    kid, payload, sig = token.split(".")
    fields = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    value = fields[index]
    fields[index] = (
        value + 1 if isinstance(value, int) else "FR" if value in (None, "US") else value + "x"
    )
    changed = base64.urlsafe_b64encode(orjson.dumps(fields)).rstrip(b"=").decode()
    return f"{head}/{kid}.{changed}.{sig}"


def test_forged_tampered_and_foreign_urls_are_refused_and_never_counted(
    client: TestClient, app: FastAPI, live: dict[str, Any], settings: Settings
) -> None:
    url = _decide(client)[0]["tracking"]["impression"]
    head, token = url.rsplit("/", 1)
    kid, payload, sig = token.split(".")
    bad: list[str] = [_tampered(url, i) for i in range(11)]  # every field of the payload
    bad += [
        url.replace("/impression/", "/click/"),  # the event in the path
        url.replace("/impression/", "/purchase/"),  # an event that is not tracked
        f"{head}/AAAAAAAA.{payload}.{sig}",  # a key name not configured
        # the signature (its own last two characters may already be "AA": 1 run in 256)
        f"{head}/{kid}.{payload}.{sig[:-2]}{'BA' if sig.endswith('AA') else 'AA'}",
        f"{head}/{kid}.{payload}",  # a part missing
        f"{head}/{kid}.{payload}.not*base64",
    ]
    foreign = TrackingSigner([b"someone-else's-key"], ttl_seconds=3600)
    bad.append(_signed(foreign, live)["impression"])
    for wrong in bad:
        resp = client.get(wrong)
        assert resp.status_code == 403, (wrong, resp.text)
        assert resp.json()["error"]["code"] == "beacon_refused"
    assert _events(app) == []
    metrics = client.get("/metrics").text
    for reason in ("bad_signature", "unknown_key", "malformed"):
        assert f'adtarget_beacons_refused_total{{reason="{reason}"}}' in metrics


def test_expired_urls_are_refused(client: TestClient, app: FastAPI, live: dict[str, Any]) -> None:
    signer = container_of(app).tracking
    assert signer is not None
    old = _signed(signer, live, now=time.time() - signer.ttl_seconds - 5)
    resp = client.get(old["impression"])
    assert resp.status_code == 403 and "expired" in resp.json()["error"]["message"]
    assert _events(app) == []


def test_a_rotated_key_keeps_verifying_until_it_is_dropped(
    settings: Settings, started: Callable[..., Any]
) -> None:
    from adtarget.api.app import create_app

    def client_with(keys: str) -> tuple[TestClient, FastAPI]:
        app = create_app(settings.model_copy(update={"tracking_keys": keys}))
        started(app)
        return TestClient(app, raise_server_exceptions=False), app

    old_client, old_app = client_with("old-key")
    make_live(old_client, [("all", "", 1)])
    container_of(old_app).decisions.engine.index_holder.refresh()
    before = _decide(old_client)[0]["tracking"]

    rotated, rotated_app = client_with("new-key,old-key")  # new signs, old still verifies
    container_of(rotated_app).decisions.engine.index_holder.refresh()
    assert rotated.get(before["impression"]).status_code == 204
    after = _decide(rotated, user="u2")[0]["tracking"]
    assert (
        after["impression"].split("/")[-1].split(".")[0]
        != (before["impression"].split("/")[-1].split(".")[0])
    )  # signed with the new key

    dropped, _ = client_with("new-key")  # grace over
    assert dropped.get(before["start"]).status_code == 403
    assert dropped.get(after["start"]).status_code == 204


def test_concurrent_duplicates_count_once_and_reports_equal_the_beacons(
    client: TestClient, app: FastAPI, live: dict[str, Any]
) -> None:
    decisions = [_decide(client, user=f"u{i}")[0] for i in range(12)]
    urls = [d["tracking"]["impression"] for d in decisions] * 4  # each fired 4 times at once
    urls += [d["tracking"]["complete"] for d in decisions[:5]] * 3
    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(lambda u: client.get(u).status_code, urls))
    assert codes == [204] * len(urls)
    rows = _events(app)
    assert sum(r["type"] == "impression" for r in rows) == 12
    assert sum(r["type"] == "complete" for r in rows) == 5
    report = client.get(
        "/v1/reports",
        params={
            "from": "2026-01-01T00:00:00Z",
            "to": "2099-01-01T00:00:00Z",
            "group_by": "line_item",
            "metrics": "impressions,completes,spend",
        },
    )
    assert report.status_code == 200, report.text
    totals = report.json()["rows"]
    assert sum(r["impressions"] for r in totals) == 12
    assert sum(r["completes"] for r in totals) == 5
    assert sum(r["spend"] for r in totals) == pytest.approx(12 * 0.002)


METRICS = "impressions,starts,first_quartiles,midpoints,third_quartiles,completes,clicks"


def _serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``adtarget serve`` (one worker) on ``data_dir``, in its own process group."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADTARGET_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(ADTARGET_DATA_DIR=str(data_dir), ADTARGET_ADMIN_KEY="crash-admin")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "adtarget.cli.main", "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base, proc, path="/readyz")
    return proc, base


@pytest.mark.slow
def test_a_server_killed_right_after_its_204s_loses_no_beacon(tmp_path: Path) -> None:
    """SIGKILL the whole server right after the last 204: the restarted server replays the
    write-ahead file, and the report holds every answered beacon exactly once."""
    headers = {"Authorization": "Bearer crash-admin"}
    proc, base = _serve(tmp_path)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=10) as c:
            make_live(c, [("all", "", 1)])  # type: ignore[arg-type]  # same calls as TestClient
            decisions: list[dict[str, Any]] = []
            for _ in range(100):  # the worker's index picks the new line item up
                decisions = c.post("/v1/decisions", json={"user_id": "u1"}).json()["decisions"]
                if decisions:
                    break
                time.sleep(0.1)
            assert decisions
            for url in decisions[0]["tracking"].values():
                for _ in range(2):  # a player's retry
                    assert c.get(url).status_code == 204
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    proc, base = _serve(tmp_path)
    try:
        report = httpx.get(
            f"{base}/v1/reports",
            params={
                "from": "2026-01-01T00:00:00Z",
                "to": "2099-01-01T00:00:00Z",
                "metrics": METRICS,
            },
            headers=headers,
            timeout=10,
        )
        assert report.status_code == 200, report.text
        (row,) = report.json()["rows"]
        counted = {k: row[k] for k in METRICS.split(",")}
        assert counted == dict.fromkeys(counted, 1), row  # each answered beacon, once
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_full_backlog_answers_503_and_loses_nothing_once_the_log_is_back(
    client: TestClient,
    app: FastAPI,
    live: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The event log is down: answered beacons wait in the write-ahead file up to its bound,
    then beacons are refused with 503 (never a 500, never an unbounded file); once the log is
    back, the players' retries are taken and every beacon counts exactly once."""
    container = container_of(app)
    assert container.beacons is not None
    assert container.beacons._wal.max_bytes == container.settings.beacon_backlog_mb * 2**20
    container.beacons.close()
    container.beacons = BeaconIntake(
        container.event_store, tmp_path / "wal", flush_interval_s=0.05, max_backlog_bytes=3000
    )
    down = True
    real_ingest = beacon_intake.ingest_events

    def event_log(**kwargs: Any) -> Any:
        if down:
            raise StoreUnavailable("event log down (test)")
        return real_ingest(**kwargs)

    monkeypatch.setattr(beacon_intake, "ingest_events", event_log)
    urls = [_decide(client, user=f"b{i}")[0]["tracking"]["impression"] for i in range(30)]
    codes = {url: client.get(url).status_code for url in urls}
    refused = [url for url, code in codes.items() if code == 503]
    assert set(codes.values()) == {204, 503} and 3 <= len(refused) < 30
    resp = client.get(refused[0])
    assert resp.status_code == 503 and resp.headers["retry-after"]
    assert resp.json()["error"]["code"] == "store_unavailable"
    assert "retry" in resp.json()["error"]["message"]
    deferred = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("adtarget_beacons_deferred_total ")
    ]
    assert deferred and float(deferred[0].split()[1]) >= len(refused) + 1
    assert list((tmp_path / "wal").glob("*.wal"))  # the answered ones wait on disk

    down = False
    container.beacons.flush()
    assert not list((tmp_path / "wal").glob("*.wal"))
    for url in urls:  # players retry what was refused (and some what was taken)
        for _ in range(100):  # a full backlog again wakes the mover; the player retries
            if (code := client.get(url).status_code) != 503:
                break
            time.sleep(0.02)
        assert code == 204
    rows = _events(app)
    assert sorted(r["event_id"] for r in rows if r["type"] == "impression") == sorted(
        {r["event_id"] for r in rows if r["type"] == "impression"}
    )
    assert sum(r["type"] == "impression" for r in rows) == 30
