"""``POST /v1/decisions`` of an app built from settings with Redis profiles and counters: the
route reads the user on the event loop (``decision/redis_async.py``) and answers as the
engine's own read does (``ADTARGET_REDIS_ASYNC_READS=false``), frequency caps included."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adtarget.api.app import create_app
from adtarget.api.container import container_of
from adtarget.audience.redis_profiles import load_profiles_into_redis, open_client
from adtarget.decision.factory import COUNTER_PREFIX
from adtarget.settings import Settings

from .conftest import make_live

pytestmark = pytest.mark.redis


def _run(
    tmp_path: Path, started: Callable[..., Any], redis_url: str, prefix: str, loop_reads: bool
) -> tuple[list[list[str]], Any]:
    """Three rounds of decisions for a US user, a CA user and an unknown one."""
    tag = uuid.uuid4().hex[:10]  # counters live under the app's fixed prefix: fresh users
    users = [f"{tag}-us", f"{tag}-ca", f"{tag}-nobody"]
    redis = open_client(redis_url)
    try:
        load_profiles_into_redis(
            [(users[0], {"country": "US"}), (users[1], {"country": "CA"})],
            redis,
            version="v000001",
            prefix=prefix,
        )
        settings = Settings(
            data_dir=tmp_path / prefix.replace(":", "_"),
            actor="tester",
            redis_url=redis_url,
            profile_store="redis",
            counter_store="redis",
            redis_profile_prefix=prefix,
            redis_async_reads=loop_reads,
        )
        app = create_app(settings)
        client = started(app)
        made = make_live(client, [("us", 'country = "US"', 1), ("any", "", 2)])
        capped = client.patch(
            f"/v1/line-items/{made['us']['id']}",
            json={"frequency_cap": {"count": 2, "window_seconds": 3600}},
        )
        assert capped.status_code == 200, capped.text
        holder = container_of(app).decisions.engine.index_holder
        deadline = time.monotonic() + 10
        while not any(i.id == made["us"]["id"] and i.caps for i in holder.current().items):
            assert time.monotonic() < deadline, "the cap never reached the index"
            time.sleep(0.01)  # the change is patched in by the index's thread
        names = {made[n]["id"]: n for n in ("us", "any")}
        out = []
        for _ in range(3):
            for user in users:
                resp = client.post("/v1/decisions", json={"user_id": user, "limit": 1})
                assert resp.status_code == 200, resp.text
                body = resp.json()
                assert not body["degraded"], body
                out.append([names[d["line_item_id"]] for d in body["decisions"]])
        return out, container_of(app).decisions.reads
    finally:
        redis.delete(*(f"{COUNTER_PREFIX}{{{u}}}" for u in users))
        redis.close()


def test_route_reads_the_user_on_the_loop_and_answers_as_the_engine_does(
    tmp_path: Path, started: Callable[..., Any], redis_url: str, redis_prefix: str
) -> None:
    on_loop, reads = _run(tmp_path, started, redis_url, redis_prefix + "loop:", True)
    blocking, none = _run(tmp_path, started, redis_url, redis_prefix + "blocking:", False)
    assert none is None  # ADTARGET_REDIS_ASYNC_READS=false: the engine reads the user itself
    assert reads is not None and sum(c.writes for c in reads.connections()) >= 9
    assert on_loop == blocking
    # the US user: "us" up to its cap of 2, then "any"; the others: "any" every time
    assert on_loop[0::3] == [["us"], ["us"], ["any"]]
    assert on_loop[1::3] == on_loop[2::3] == [["any"]] * 3
