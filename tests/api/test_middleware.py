"""The guard middleware: load shedding, body limit, deadlines, driven through a tiny ASGI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adtarget.api.errors import render_adtarget_error
from adtarget.api.middleware import DEADLINE_SCOPE_KEY, GuardMiddleware
from adtarget.errors import AdtargetError


def make_app(
    gate: asyncio.Event, *, max_inflight: int = 1, max_body: int = 1024
) -> GuardMiddleware:
    async def slow(_request: Request) -> Response:
        await gate.wait()
        return JSONResponse({"ok": True})

    async def echo(request: Request) -> Response:
        try:
            body = await request.body()
        except AdtargetError as err:
            return render_adtarget_error(err)
        return JSONResponse({"n": len(body), "deadline": DEADLINE_SCOPE_KEY in request.scope})

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    inner = Starlette(
        routes=[
            Route("/slow", slow),
            Route("/echo", echo, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )
    return GuardMiddleware(inner, max_inflight=max_inflight, max_body_bytes=max_body)


def client(app: GuardMiddleware) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_sheds_load_beyond_max_inflight_with_retry_after() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        app = make_app(gate, max_inflight=1)
        async with client(app) as c:
            first = asyncio.create_task(c.get("/slow"))
            while app.inflight < 1:
                await asyncio.sleep(0.001)
            shed = await c.get("/slow")
            assert shed.status_code == 503
            assert shed.headers["retry-after"] == "1"
            assert shed.json()["error"]["code"] == "overloaded"
            health = await c.get("/healthz")  # never shed
            assert health.status_code == 200
            gate.set()
            assert (await first).status_code == 200
            assert app.inflight == 0
            assert (await c.get("/slow")).status_code == 200  # capacity is back

    asyncio.run(scenario())


def test_body_over_the_limit_is_413_before_reading() -> None:
    async def scenario() -> None:
        app = make_app(asyncio.Event(), max_body=1024)
        async with client(app) as c:
            ok = await c.post("/echo", content=b"x" * 1024)
            assert ok.status_code == 200 and ok.json()["n"] == 1024
            big = await c.post("/echo", content=b"x" * 1025)
            assert big.status_code == 413
            assert big.json()["error"]["code"] == "payload_too_large"
            assert big.json()["error"]["field"] == "body"

    asyncio.run(scenario())


def test_chunked_body_over_the_limit_is_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 400

    async def scenario() -> None:
        app = make_app(asyncio.Event(), max_body=1024)
        async with client(app) as c:
            resp = await c.post("/echo", content=chunks())
            assert resp.status_code == 413

    asyncio.run(scenario())


def test_deadline_header_answers_503_before_a_slow_route_finishes() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        app = make_app(gate, max_inflight=4)
        async with client(app) as c:
            resp = await c.get("/slow", headers={"X-Request-Deadline-Ms": "20"})
            assert resp.status_code == 503
            assert resp.json()["error"]["code"] == "deadline_exceeded"
            assert app.inflight == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("value", ["abc", "0", "-5"])
def test_bad_deadline_header_is_400_naming_it(value: str) -> None:
    async def scenario() -> None:
        app = make_app(asyncio.Event())
        async with client(app) as c:
            resp = await c.post("/echo", content=b"{}", headers={"X-Request-Deadline-Ms": value})
            assert resp.status_code == 400
            assert resp.json()["error"]["field"] == "X-Request-Deadline-Ms"

    asyncio.run(scenario())


def test_deadline_is_exposed_to_routes() -> None:
    async def scenario() -> None:
        app = make_app(asyncio.Event())
        async with client(app) as c:
            plain = await c.post("/echo", content=b"{}")
            assert plain.json()["deadline"] is False
            timed = await c.post("/echo", content=b"{}", headers={"X-Request-Deadline-Ms": "500"})
            assert timed.json()["deadline"] is True

    asyncio.run(scenario())


def test_metric_buffer_writes_what_direct_updates_would() -> None:
    """Batched counters and histogram observations end up exactly as one-by-one updates."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from adtarget.api.metrics import LATENCY_BUCKETS
    from adtarget.api.middleware import MetricBuffer

    registry = CollectorRegistry()
    direct_h = Histogram("direct_seconds", "d", buckets=LATENCY_BUCKETS, registry=registry)
    batched_h = Histogram("batched_seconds", "b", buckets=LATENCY_BUCKETS, registry=registry)
    direct_c = Counter("direct", "d", registry=registry)
    batched_c = Counter("batched", "b", registry=registry)
    values = [0.0, 0.0005, 0.0004, 0.001, 0.0049, 0.005, 0.3, 7.0, 0.0005000001]
    buffer = MetricBuffer()
    for v in values:
        direct_h.observe(v)
        direct_c.inc(2)
        buffer.observe(batched_h, v)
        buffer.inc(batched_c, 2)
    assert registry.get_sample_value("batched_total") == 0.0  # nothing written yet
    buffer.maybe_flush()  # no running loop: flushes inline
    for suffix in ("_count", "_sum"):
        assert registry.get_sample_value("batched_seconds" + suffix) == pytest.approx(
            registry.get_sample_value("direct_seconds" + suffix)
        )
    for bound in (*LATENCY_BUCKETS, float("inf")):
        le = {"le": str(bound) if bound != float("inf") else "+Inf"}
        assert registry.get_sample_value("batched_seconds_bucket", le) == registry.get_sample_value(
            "direct_seconds_bucket", le
        ), bound
    assert registry.get_sample_value("batched_total") == registry.get_sample_value("direct_total")


def test_metric_buffer_flushes_at_the_next_loop_turn() -> None:
    from prometheus_client import CollectorRegistry, Counter

    from adtarget.api.middleware import MetricBuffer

    registry = CollectorRegistry()
    counter = Counter("turns", "t", registry=registry)
    buffer = MetricBuffer()

    async def run() -> tuple[float | None, float | None]:
        for _ in range(5):
            buffer.inc(counter)
            buffer.maybe_flush()
        before = registry.get_sample_value("turns_total")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return before, registry.get_sample_value("turns_total")

    assert asyncio.run(run()) == (0.0, 5.0)
