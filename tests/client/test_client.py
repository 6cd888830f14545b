"""``adtarget.client`` against a live ``adtarget serve`` (a subprocess on a loopback port)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from tests.cli.test_catalog_code import CATALOG
from tests.client.conftest import ADMIN_KEY, Server

from adtarget.api.app import create_app
from adtarget.catalog.models import AdvertiserRead, CampaignCreate, CampaignRead
from adtarget.client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidValue,
    NotFound,
    NothingToUndo,
    Unauthorized,
    _calls,
)
from adtarget.errors import Overloaded, RuleSyntaxError


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_every_public_route_has_a_client_call() -> None:
    spec = create_app().openapi()
    published = {
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if not path.startswith(("/console", "/docs", "/redoc", "/openapi"))
    }
    assert published - _calls.ROUTES == set(), "routes without a client call"


def test_catalog_round_trip_with_models_pages_and_typed_errors(server: Server) -> None:
    with Client(server.url, ADMIN_KEY) as api:
        adv = api.advertisers.create(name=unique("Acme"))
        assert isinstance(adv, AdvertiserRead) and adv.status == "active"
        made = [
            api.campaigns.create(
                CampaignCreate(
                    advertiser_id=adv.id,
                    name=f"c{i}",
                    budget_total=100 + i,  # type: ignore[arg-type]
                    start=datetime(2026, 1, 1, tzinfo=UTC),
                    end=datetime(2026, 12, 31, tzinfo=UTC),
                )
            )
            for i in range(5)
        ]
        assert all(isinstance(c, CampaignRead) and c.status == "draft" for c in made)
        page = api.campaigns.list(advertiser_id=adv.id, limit=2)
        assert len(page.items) == 2 and page.next_after == page.items[-1].id
        everything = list(api.campaigns.iter(advertiser_id=adv.id, page_size=2))
        assert [c.id for c in everything] == [c.id for c in made]

        changed = api.campaigns.update(made[0].id, budget_total=150, version=made[0].version)
        assert float(changed.budget_total) == 150.0
        with pytest.raises(Conflict) as stale:
            api.campaigns.update(made[0].id, {"budget_total": 160}, version=made[0].version)
        assert stale.value.status == 409  # type: ignore[attr-defined]
        with pytest.raises(NotFound) as missing:
            api.campaigns.get(10**9)
        assert missing.value.status == 404 and "does not exist" in missing.value.message  # type: ignore[attr-defined]
        with pytest.raises(InvalidValue) as bad:
            api.campaigns.create(advertiser_id=adv.id, name="x", budget_total=-1)
        assert bad.value.field is not None

        step = api.undo()  # the budget change
        assert "update campaign" in step.description
        assert float(api.campaigns.get(made[0].id).budget_total) == 100.0
        assert api.history()[0].state == "undone"
        api.redo()

        with pytest.raises(RuleSyntaxError) as rule:
            api.line_items.create(
                campaign_id=made[1].id, name="bad", targeting='country = "US" and (', bid_cpm=1
            )
        assert rule.value.field == "targeting"
        with pytest.raises(NotFound, match="no audience snapshot"):
            api.size('country = "US"')


def test_wrong_key_is_unauthorized_and_nothing_to_undo_is_typed(server: Server) -> None:
    with Client(server.url, "not-a-key") as api, pytest.raises(Unauthorized):
        api.advertisers.list()
    with Client(server.url, ADMIN_KEY) as admin:
        adv = admin.advertisers.create(name=unique("NoHistory"))  # not another test's
        key = admin.create_key("advertiser", advertiser_id=adv.id)
    with Client(server.url, key["key"]) as api, pytest.raises(NothingToUndo):
        api.undo()


def test_idempotent_calls_are_retried_and_creates_are_not(server: Server) -> None:
    hits: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        hits.append(request.method)
        if len(hits) < 3:
            return httpx.Response(503, json={"error": {"code": "overloaded", "message": "busy"}})
        return httpx.Response(200, json={"status": "ok"})

    with Client("http://adtarget.invalid", transport=httpx.MockTransport(flaky), backoff=0) as api:
        assert api.healthz() == {"status": "ok"} and hits == ["GET"] * 3
    hits.clear()
    with (
        Client("http://adtarget.invalid", transport=httpx.MockTransport(flaky), backoff=0) as api,
        pytest.raises(Overloaded) as err,
    ):
        api.advertisers.create(name="once")
    assert hits == ["POST"] and err.value.status == 503  # type: ignore[attr-defined]


def test_async_client(server: Server) -> None:
    async def main() -> None:
        async with AsyncClient(server.url, ADMIN_KEY) as api:
            adv = await api.advertisers.create(name=unique("Async"))
            again = await api.advertisers.get(adv.id)
            assert again == adv
            names = [a.name async for a in api.advertisers.iter(page_size=1)]
            assert adv.name in names
            with pytest.raises(NotFound):
                await api.line_items.get(10**9)
            assert (await api.readyz()) is not None

    asyncio.run(main())


def test_new_user_path_yaml_catalog_then_report_through_the_client(
    server: Server, tmp_path: Path
) -> None:
    """From the README: apply a catalog from YAML with the CLI, read a report with the client."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG.replace("Acme", "NewUserCo"), encoding="utf-8")
    cli = [sys.executable, "-m", "adtarget.cli.main"]
    done = subprocess.run(
        [*cli, "apply", "-f", str(catalog), "--no-archive"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Applied:" in done.stdout

    with Client(server.url, ADMIN_KEY) as api:
        adv = next(a for a in api.advertisers.iter() if a.name == "NewUserCo")
        camp = next(api.campaigns.iter(advertiser_id=adv.id))
        items = {li.name: li for li in api.line_items.iter(campaign_id=camp.id)}
        assert set(items) == {"US", "CA"} and items["US"].priority == 3
        now = datetime.now(UTC).isoformat()
        events = [
            {
                "event_id": unique("e"),
                "type": "impression",
                "ts": now,
                "user_id": f"u{i}",
                "line_item_id": items["US"].id,
                "cost": 0.005,
            }
            for i in range(4)
        ]
        result = api.post_events(events)
        assert result.accepted == 4 and result.rejected == []
        assert api.post_events(events).duplicates == 4  # retried safely
        report = api.report(group_by="line_item", metrics=["impressions", "spend"])
        row = next(r for r in report.rows if str(r["line_item_id"]) == str(items["US"].id))
        assert row["impressions"] == 4 and row["spend"] == pytest.approx(0.02)
        assert "impressions" in api.report_csv(group_by="day").splitlines()[0]


def test_an_ad_break_through_the_client(server: Server) -> None:
    name = unique("PodCo")
    with Client(server.url, ADMIN_KEY) as api:
        adv = api.advertisers.create({"name": name, "category": "Auto"})
        assert adv.category == "auto"
        camp = api.campaigns.create(
            {
                "advertiser_id": adv.id,
                "name": "breaks",
                "budget_total": 100,
                "start": "2026-01-01T00:00:00Z",
                "end": "2099-01-01T00:00:00Z",
            }
        )
        creative = api.creatives.create(
            {
                "advertiser_id": adv.id,
                "name": "spot",
                "format": "video_15s",
                "attributes": {"media_url": "https://cdn.example/s.mp4", "duration": 15},
            }
        )
        li = api.line_items.create(
            {"campaign_id": camp.id, "name": "li", "targeting": "", "bid_cpm": 99, "priority": 1}
        )
        api.attach_creative(li.id, creative.id)
        api.line_items.update(li.id, {"status": "active"})
        api.campaigns.update(camp.id, {"status": "active"})
        pod = {"slots": 2, "max_duration": 30}
        deadline = datetime.now(UTC).timestamp() + 10
        while True:  # the write reaches the index within the poll at the latest
            result = api.decide(unique("u"), pod=pod)
            served = [d.line_item_id for d in result.decisions]
            if li.id in served or datetime.now(UTC).timestamp() > deadline:
                break
        assert served[0] == li.id and result.pod is not None
        assert result.pod.filled == len(served) and result.pod.duration >= 15
        assert [u.slot for u in result.pod.unfilled] == list(range(len(served) + 1, 3))
        with pytest.raises(InvalidValue) as err:
            api.decide("u", pod={"slots": 0, "max_duration": 30})
        assert err.value.field == "pod.slots"


def test_vast_returns_the_break_as_xml(server: Server) -> None:
    with Client(server.url, ADMIN_KEY) as api:
        xml = api.vast(unique("viewer"), slots=2, max_duration=60, context={"country": "ZZ"})
    assert xml.startswith("<?xml") and '<VAST version="4.2"' in xml
