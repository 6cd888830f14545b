"""A Redis profile store that lost its live version (restarted empty) or cannot be reached is
degraded, and says so in decisions and in ``/readyz``; it never treats every user as unknown
while the catalog records a published snapshot. Uses a throwaway ``redis-server`` of our own."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from adtarget.decision.engine import DecisionEngine, StaticIndex
from adtarget.decision.index import LineItemIndex
from adtarget.decision.models import DecisionRequest
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.rules.parse import parse
from adtarget.settings import Settings

from .strategies import line_item
from .test_degradation import Clock, _free_port, _load, _start_redis, own_redis  # noqa: F401

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _engine(store: RedisProfileStore) -> DecisionEngine:
    items = [
        line_item(1, parse('country not in ("CA")'), priority=1),
        line_item(2, parse('device = "tv"'), priority=2),
    ]
    return DecisionEngine(
        index_holder=StaticIndex(LineItemIndex(items)),
        profiles=store,
        counters=None,  # type: ignore[arg-type]
        failure_threshold=1000,
        breaker_clock=Clock(),
    )


def test_redis_restarted_empty_is_degraded(own_redis: dict[str, Any]) -> None:  # noqa: F811
    port = own_redis["port"]
    _load(port, "t:")  # live version v000042, user u1 from the US
    store = RedisProfileStore(
        f"redis://127.0.0.1:{port}/0", prefix="t:p:", timeout=0.5, published=lambda: "v000042"
    )
    engine = _engine(store)
    req = DecisionRequest("u2", context={"device": "tv"}, limit=5)
    first = engine.decide(req)
    assert not first.degraded and store.check()["ok"]

    own_redis["proc"].kill()
    own_redis["proc"].wait()
    own_redis["proc"] = _start_redis(port)  # back, with nothing in it
    store._version = None  # past the pointer's cache time (VERSION_TTL_S)
    after = engine.decide(req)
    assert after.degraded  # was: degraded False, every user unknown
    assert [d.line_item_id for d in after.decisions] == [2]  # context only
    check = store.check()
    assert not check["ok"] and "v000042" in check["error"]


def test_nothing_published_yet_is_not_degraded(own_redis: dict[str, Any]) -> None:  # noqa: F811
    store = RedisProfileStore(
        f"redis://127.0.0.1:{own_redis['port']}/0", prefix="n:p:", published=lambda: None
    )
    assert not _engine(store).decide(DecisionRequest("u", context={"device": "tv"})).degraded
    assert store.check()["ok"]


@pytest.fixture
def redis_app_client(settings: Settings) -> Iterator[TestClient]:
    from adtarget.api.app import create_app

    port = _free_port()  # nothing listens there
    app = create_app(
        settings.model_copy(
            update={"profile_store": "redis", "redis_url": f"redis://127.0.0.1:{port}/0"}
        )
    )
    with TestClient(app, raise_server_exceptions=False) as client:  # the lifespan builds it
        yield client


def test_unreachable_redis_is_in_readyz(redis_app_client: TestClient) -> None:
    resp = redis_app_client.get("/readyz")
    body = resp.json()
    assert body["status"] == "degraded", body
    assert body["checks"]["profiles"]["ok"] is False
    assert "redis" in body["checks"]["profiles"]["store"]
