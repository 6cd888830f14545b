"""HTTP decisions under load: ``adtarget serve --workers N`` against a hello-world ASGI app.

Builds a catalog with ``--line-items`` live line items (generated rules over country, device,
age and genres; every line item has a creative, some have frequency caps) and a published
audience snapshot of ``--users`` users, serves it with ``adtarget serve`` (uvicorn, uvloop,
httptools) on a free loopback port, and drives ``POST /v1/decisions`` with a decisions key using
wrk (``apt-get install wrk``) or, without wrk, a raw-socket keep-alive client in separate
processes. Then it serves a hello-world ASGI app the same way (same uvicorn options, workers,
load generator and request body) and prints both, with the ratio.

    python bench/bench_http.py --seconds 10 --concurrency 32

The load generator shares the machine's cores with the server: on a 2-core box the figures are
those of server + client together, as the issue asks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

HERE = Path(__file__).resolve().parent
COUNTRIES = ["US", "CA", "GB", "DE", "FR", "BR", "IN", "JP"]
DEVICES = ["tv", "mobile", "desktop", "tablet"]
GENRES = ["scifi", "drama", "comedy", "horror", "kids", "news", "sports", "docs"]
FLEET_STORES = {"single": "single Redis", "cluster": "Redis Cluster (3+3)"}


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The baseline: reads the request body and answers a small JSON object."""
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"decisions":[],"snapshot":null,"degraded":false}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- data -------------------------------------------------------------------------------------


def _rule(rng: random.Random) -> str:
    clauses: list[Callable[[], str]] = [
        lambda: f"country in ({', '.join(json.dumps(c) for c in rng.sample(COUNTRIES, 2))})",
        lambda: f'device = "{rng.choice(DEVICES)}"',
        lambda: f"age between {rng.randint(13, 40)} and {rng.randint(41, 80)}",
        lambda: f'genres has any ("{rng.choice(GENRES)}", "{rng.choice(GENRES)}")',
        lambda: f'not country = "{rng.choice(COUNTRIES)}"',
    ]
    picked = rng.sample(clauses, rng.randint(1, 3))
    return " and ".join(c() for c in picked)


def build_catalog(data_dir: Path, line_items: int, seed: int) -> str:
    """Dimensions, advertisers, active campaigns and line items with creatives; returns a key."""
    from adtarget.api.auth import create_key
    from adtarget.catalog.db import open_catalog
    from adtarget.catalog.tables import (
        Advertiser,
        Campaign,
        Creative,
        Dimension,
        LineItem,
        LineItemCreative,
    )
    from adtarget.settings import Settings

    rng = random.Random(seed)
    factory = open_catalog(Settings(data_dir=data_dir))
    now = datetime.now(UTC)
    with factory() as s, s.begin():
        for name, typ in (
            ("country", "category"),
            ("device", "category"),
            ("age", "number"),
            ("genres", "set"),
        ):
            s.add(Dimension(name=name, type=typ))
        advertisers = [Advertiser(name=f"adv{i}") for i in range(max(1, line_items // 50))]
        s.add_all(advertisers)
        s.flush()
        campaigns = [
            Campaign(
                advertiser_id=a.id,
                name=f"camp{a.id}-{j}",
                status="active",
                budget_total=Decimal(10**9),
                start=now - timedelta(days=1),
                end=now + timedelta(days=30),
            )
            for a in advertisers
            for j in range(2)
        ]
        s.add_all(campaigns)
        s.flush()
        creatives = {
            a.id: Creative(advertiser_id=a.id, name=f"cr{a.id}", format="video_15s")
            for a in advertisers
        }
        s.add_all(creatives.values())
        s.flush()
        items = []
        for i in range(line_items):
            camp = campaigns[i % len(campaigns)]
            capped = rng.random() < 0.1
            items.append(
                LineItem(
                    campaign_id=camp.id,
                    name=f"li{i}",
                    status="active",
                    priority=rng.randint(1, 16),
                    bid_cpm=Decimal(rng.randint(100, 5000)) / 100,
                    targeting=_rule(rng),
                    formats=["video_15s"],
                    frequency_cap_count=3 if capped else None,
                    frequency_cap_window_seconds=3600 if capped else None,
                )
            )
        s.add_all(items)
        s.flush()
        camp_adv = {c.id: c.advertiser_id for c in campaigns}
        s.add_all(
            LineItemCreative(line_item_id=li.id, creative_id=creatives[camp_adv[li.campaign_id]].id)
            for li in items
        )
        _row, key = create_key(session=s, role="decisions", name="bench")
    return key


def build_snapshot(data_dir: Path, users: int, seed: int) -> str:
    """A published snapshot of ``users`` generated users."""
    from adtarget.audience.build import SnapshotBuilder
    from adtarget.audience.store import SnapshotStore
    from adtarget.rules.registry import DimensionSpec
    from adtarget.settings import Settings

    rng = random.Random(seed)
    settings = Settings(data_dir=data_dir)
    store = SnapshotStore(settings.snapshots_dir, keep=settings.snapshots_keep)
    registry = {
        "country": DimensionSpec("country", "category"),
        "device": DimensionSpec("device", "category"),
        "age": DimensionSpec("age", "number"),
        "genres": DimensionSpec("genres", "set"),
    }
    builder = SnapshotBuilder(store=store, base=None, registry=registry, mode="replace")
    batch = pa.RecordBatch.from_pydict(
        {
            "user_id": [f"u{i}" for i in range(users)],
            "country": [rng.choice(COUNTRIES) for _ in range(users)],
            "device": [rng.choice(DEVICES) for _ in range(users)],
            "age": [rng.randint(13, 80) for _ in range(users)],
            "genres": [rng.sample(GENRES, rng.randint(0, 3)) for _ in range(users)],
        }
    )
    builder.add_batch(batch)
    return store.publish(builder.finish())


def request_bodies(users: int, n: int, seed: int) -> list[bytes]:
    """``n`` decision requests for known users with a varying context."""
    rng = random.Random(seed + 1)
    return [
        json.dumps(
            {
                "user_id": f"u{rng.randrange(users)}",
                "context": {"device": rng.choice(DEVICES)},
                "formats": ["video_15s"],
            }
        ).encode()
        for _ in range(n)
    ]


# --- serving and load -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} not ready after {timeout} s")


def start_own(start: Any, ready_path: str, tries: int = 3) -> tuple[int, subprocess.Popen[bytes]]:
    """Start a server on a free port and wait until *it* answers there.

    A port free a moment ago may be taken by another process before the server binds it (the
    test suite starts servers in parallel); then the server exits and the port answers for
    someone else, so readiness alone would load the wrong server. Retried on a new port."""
    for _ in range(tries):
        port = free_port()
        proc: subprocess.Popen[bytes] = start(port)
        try:
            wait_ready(port, ready_path)
        except RuntimeError:
            stop(proc)
            continue
        time.sleep(0.2)
        if proc.poll() is None:
            return port, proc
    raise RuntimeError(f"no server of ours became ready after {tries} ports")


def start_adtarget(
    data_dir: Path, port: int, workers: int, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ADTARGET_DATA_DIR": str(data_dir), **(extra or {})}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [
        sys.executable,
        "-m",
        "adtarget.cli.main",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start_hello(port: int, workers: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(HERE),
        "bench_http:hello_app",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


STATUS_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = {} sample = {} end
function response(status, headers, body)
  if status < 200 or status >= 300 then
    bad[status] = (bad[status] or 0) + 1
    if sample[status] == nil then sample[status] = body end
  end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local b, s = t:get("bad"), t:get("sample")
    for code, n in pairs(b) do
      local one = string.gsub(s[code] or "", "%s+", " ")
      io.write(string.format("STATUS %d %d %s\\n", code, n, one))
    end
  end
end
"""
"""wrk Lua that counts the answers outside 2xx by status, with one body of each (``--statuses``)."""


def _wrk_script(
    bodies: list[bytes], headers: dict[str, str], path: Path, statuses: bool = False
) -> None:
    lua_bodies = ",\n".join("[[" + b.decode() + "]]" for b in bodies)
    hdrs = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    path.write_text(
        (STATUS_LUA if statuses else "")
        + f"""wrk.method = "POST"
{hdrs}
local bodies = {{
{lua_bodies}
}}
local i = 0
request = function()
  i = (i % #bodies) + 1
  return wrk.format(nil, "/v1/decisions", nil, bodies[i])
end
"""
    )


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return float(m.group(1)) * scale


def run_wrk(port: int, seconds: float, concurrency: int, script: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/v1/decisions",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    result: dict[str, Any] = {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 0.0 if errors is None else 1.0,
    }
    seen: dict[str, Any] = {}
    for code, n, body in re.findall(r"^STATUS (\d+) (\d+) ?(.*)$", out, re.M):
        seen[code] = {"count": seen.get(code, {}).get("count", 0) + int(n), "body": body[:300]}
    if seen:
        result["statuses"] = seen
    return result


def _python_client() -> bool:
    return shutil.which("wrk") is None or bool(os.environ.get("ADTARGET_BENCH_PYTHON_CLIENT"))


def run_load(
    port: int,
    seconds: float,
    concurrency: int,
    bodies: list[bytes],
    headers: dict[str, str],
    tmp: Path,
    statuses: bool = False,
) -> dict[str, Any]:
    """wrk when installed (and not ``--python-client``), else ``run_socket_load``.

    ``statuses``: count every answer outside 2xx by status, with one body of each (the socket
    client always does)."""
    if not _python_client():
        script = tmp / f"decisions-{port}.lua"
        _wrk_script(bodies, headers, script, statuses)
        return run_wrk(port, seconds, concurrency, script)
    return run_socket_load(port, "/v1/decisions", bodies, headers, seconds, concurrency)


async def _socket_worker(
    port: int, requests: list[bytes], until: float, latencies: list[float], status: list[int]
) -> None:
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            status.append(int(head[9:12]))
    finally:
        writer.close()


def _socket_load_process(
    port: int, requests: list[bytes], seconds: float, concurrency: int, out: Any
) -> None:
    import asyncio

    latencies: list[float] = []
    status: list[int] = []

    async def run() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(
            *(_socket_worker(port, requests, until, latencies, status) for _ in range(concurrency))
        )

    started = time.perf_counter()
    asyncio.run(run())
    out.put((latencies, status, time.perf_counter() - started))


def run_socket_load(
    port: int,
    path: str,
    bodies: list[bytes],
    headers: dict[str, str],
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    """A bounded keep-alive client in a separate process (used when wrk is not installed)."""
    import multiprocessing

    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    queue: Any = multiprocessing.Queue()
    proc = multiprocessing.Process(
        target=_socket_load_process, args=(port, requests, seconds, concurrency, queue)
    )
    proc.start()
    latencies, status, elapsed = queue.get()
    proc.join()
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000 if n else float("nan"),
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        "non_2xx": float(sum(1 for s in status if not 200 <= s < 300)),
        "socket_errors": 0.0,
        **({"statuses": bad} if (bad := _bad_statuses(status)) else {}),
    }


def _bad_statuses(status: list[int]) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for code in status:
        if not 200 <= code < 300:
            counts.setdefault(str(code), {"count": 0, "body": ""})["count"] += 1
    return counts


def measure(
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    ready_path: str,
    args: argparse.Namespace,
    bodies: list[bytes],
    headers: dict[str, str],
    tmp: Path,
) -> dict[str, Any]:
    try:
        wait_ready(port, ready_path)
        run_load(port, min(1.0, args.seconds), args.concurrency, bodies, headers, tmp)  # warm up
        result = run_load(
            port,
            args.seconds,
            args.concurrency,
            bodies,
            headers,
            tmp,
            getattr(args, "statuses", False),
        )
    finally:
        stop(proc)
    print(
        f"{name:<22} {result['rps']:>10,.0f} req/s   p50 {result['p50_ms']:6.2f} ms   "
        f"p99 {result['p99_ms']:6.2f} ms   non-2xx {result['non_2xx']:.0f}"
        + (f"  statuses {result['statuses']}" if result.get("statuses") else "")
    )
    return result


def redis_legs(
    data_dir: Path,
    args: argparse.Namespace,
    bodies: list[bytes],
    headers: dict[str, str],
    tmp: Path,
) -> dict[str, dict[str, float]]:
    """The same load with ``ADTARGET_PROFILE_STORE=redis`` and ``ADTARGET_COUNTER_STORE=redis``
    on a single Redis, then on a Redis Cluster (both private to this run, then stopped)."""
    from adtarget.audience.redis_profiles import push_current_profiles
    from adtarget.audience.store import SnapshotStore

    out: dict[str, dict[str, float]] = {}
    store = SnapshotStore(data_dir / "snapshots")
    for kind, name in FLEET_STORES.items():
        with private_redis(kind) as url:
            deadline = time.monotonic() + 10
            while True:
                try:
                    push_current_profiles(store, url)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            extra = {
                "ADTARGET_REDIS_URL": url,
                "ADTARGET_PROFILE_STORE": "redis",
                "ADTARGET_COUNTER_STORE": "redis",
            }
            port = free_port()
            proc = start_adtarget(data_dir, port, args.workers, extra)
            out[name] = measure(
                f"adtarget, {name}", proc, port, "/readyz", args, bodies, headers, tmp
            )
    one, many = out.get("single Redis"), out.get("Redis Cluster (3+3)")
    if one and many and one["rps"]:
        print(f"ratio: Redis Cluster = {many['rps'] / one['rps']:.2f} x single-Redis throughput")
    return out


def run_parallel_load(
    ports: list[int],
    args: argparse.Namespace,
    bodies: list[bytes],
    headers: dict[str, str],
    tmp: Path,
) -> dict[str, float]:
    """One load generator per port at once (``--concurrency`` split between them): req/s
    summed, p50 averaged, p99 the worst of them."""
    from concurrent.futures import ThreadPoolExecutor

    each = max(1, args.concurrency // len(ports))
    with ThreadPoolExecutor(len(ports)) as pool:
        runs = list(
            pool.map(
                lambda port: run_load(
                    port, args.seconds, each, bodies, headers, tmp, getattr(args, "statuses", False)
                ),
                ports,
            )
        )
    out: dict[str, Any] = {
        "rps": sum(r["rps"] for r in runs),
        "p50_ms": sum(r["p50_ms"] for r in runs) / len(runs),
        "p99_ms": max(r["p99_ms"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
    }
    statuses: dict[str, Any] = {}
    for r in runs:
        for code, seen in r.get("statuses", {}).items():
            known = statuses.setdefault(code, {"count": 0, "body": seen["body"]})
            known["count"] += seen["count"]
    if statuses:
        out["statuses"] = statuses
    return out


@contextlib.contextmanager
def private_redis(kind: str) -> Iterator[str]:
    """A Redis private to this run, stopped after: ``single`` (one ``redis-server``) or
    ``cluster`` (3 masters + 3 replicas by ``redis-cli --cluster create``); yields its URL."""
    sys.path.insert(0, str(HERE.parent))
    from tests.decision.redis_cluster import LocalRedisCluster, free_ports

    if kind == "cluster":
        cluster = LocalRedisCluster()
        try:
            cluster.start()
            yield cluster.url
        finally:
            cluster.stop()
        return
    port = free_ports(1)[0]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def fleet_leg(
    data_dir: Path,
    line_items: int,
    args: argparse.Namespace,
    bodies: list[bytes],
    headers: dict[str, str],
    tmp: Path,
) -> dict[str, Any]:
    """The documented multi-node shape on one box: two ``adtarget serve --workers 1`` on one
    PostgreSQL catalog (``ADTARGET_CATALOG_URL``, changes by ``LISTEN/NOTIFY``) with profiles
    and counters in Redis, loaded at once through both ports while a thread commits a catalog
    change (pause or resume of a random line item) every ``--change-every`` seconds — once with
    a single Redis and once with a Redis Cluster (each private to the run), then two
    hello-world processes under the same load."""
    legs: dict[str, dict[str, float]] = {}
    changes = 0
    for kind in args.fleet_stores:
        with private_redis(kind) as url:
            for reads in args.fleet_reads:
                leg = kind if reads == "loop" else f"{kind}, blocking reads"
                legs[leg], committed = _fleet_store_leg(
                    url, data_dir, line_items, args, bodies, headers, tmp, reads
                )
                changes += committed
    ports: list[int] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(2):
            port, proc = start_own(lambda p: start_hello(p, 1), "/")
            ports.append(port)
            procs.append(proc)
        run_parallel_load(ports, _short(args), bodies, headers, tmp)
        base = run_parallel_load(ports, args, bodies, headers, tmp)
    finally:
        for proc in procs:
            stop(proc)
    rows = [(f"fleet: 2 x adtarget serve, {_leg_name(k)}", r) for k, r in legs.items()]
    for name, r in [*rows, ("fleet: 2 x hello-world", base)]:
        print(
            f"{name:<58} {r['rps']:>10,.0f} req/s   p50 {r['p50_ms']:6.2f} ms   "
            f"p99 {r['p99_ms']:6.2f} ms   non-2xx {r['non_2xx']:.0f}"
            + (f"  statuses {r['statuses']}" if r.get("statuses") else "")
        )
    out: dict[str, Any] = {"hello": base, "changes": changes}
    for kind, r in legs.items():
        ratio = r["rps"] / base["rps"] if base["rps"] else float("nan")
        met = r["rps"] >= 8000 and r["p99_ms"] <= 5.0
        print(
            f"fleet, {_leg_name(kind)}: ratio adtarget / hello-world = {ratio:.2f}; "
            f"target >= 8,000 req/s at p99 <= 5 ms: {'met' if met else 'NOT met'}"
        )
        out[kind] = {**r, "ratio": ratio}
    print(
        f"fleet: {changes} catalog changes committed during the runs (one every "
        f"{args.change_every:g} s)"
    )
    return out


def _leg_name(leg: str) -> str:
    """``cluster, blocking reads`` -> ``Redis Cluster (3+3), blocking reads``."""
    kind, _, rest = leg.partition(", ")
    return FLEET_STORES[kind] + (f", {rest}" if rest else "")


def _fleet_store_leg(
    url: str,
    data_dir: Path,
    line_items: int,
    args: argparse.Namespace,
    bodies: list[bytes],
    headers: dict[str, str],
    tmp: Path,
    reads: str = "loop",
) -> tuple[dict[str, float], int]:
    """Two serve processes on ``url``'s Redis under load while catalog changes stream;
    ``reads``: ``loop`` (the user read on the event loop, the default) or ``blocking``
    (``ADTARGET_REDIS_ASYNC_READS=false``: read inside ``decide``, blocking the loop)."""
    import threading

    from adtarget.audience.redis_profiles import push_current_profiles
    from adtarget.audience.store import SnapshotStore
    from adtarget.catalog.db import make_engine, make_session_factory
    from bench_propagation import set_status

    engine = make_engine(os.environ["ADTARGET_CATALOG_URL"])
    factory = make_session_factory(engine)
    halt = threading.Event()
    committed = [0]

    def change_stream() -> None:
        rng = random.Random(args.seed)
        paused: int | None = None
        while not halt.wait(args.change_every):
            if paused is None:
                paused = rng.randint(1, line_items)
                set_status(factory, paused, "paused")
            else:
                set_status(factory, paused, "active")
                paused = None
            committed[0] += 1
        if paused is not None:  # the next leg starts from the same catalog
            set_status(factory, paused, "active")

    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                push_current_profiles(SnapshotStore(data_dir / "snapshots"), url)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        extra = {
            "ADTARGET_REDIS_URL": url,
            "ADTARGET_PROFILE_STORE": "redis",
            "ADTARGET_COUNTER_STORE": "redis",
            "ADTARGET_REDIS_ASYNC_READS": "true" if reads == "loop" else "false",
        }
        for _ in range(2):
            port, proc = start_own(lambda p: start_adtarget(data_dir, p, 1, extra), "/readyz")
            ports.append(port)
            procs.append(proc)
        run_parallel_load(ports, _short(args), bodies, headers, tmp)  # warm up
        changes = threading.Thread(target=change_stream, daemon=True)
        changes.start()
        ours = run_parallel_load(ports, args, bodies, headers, tmp)
        halt.set()
        changes.join()
    finally:
        halt.set()
        for proc in procs:
            stop(proc)
        engine.dispose()
    return ours, committed[0]


def _short(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "seconds": min(1.0, args.seconds)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--line-items", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    parser.add_argument(
        "--redis",
        action="store_true",
        help="also serve profiles and counters from a single Redis and from a Redis Cluster "
        "(3 masters + 3 replicas), each started on free loopback ports for the run",
    )
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="only the multi-node shape: two `adtarget serve --workers 1` on one throwaway "
        "PostgreSQL catalog (127.0.0.1:5432) with Redis, a catalog change stream running, "
        "beside two hello-world processes",
    )
    parser.add_argument("--change-every", type=float, default=0.1, help="seconds (--fleet)")
    parser.add_argument(
        "--fleet-stores",
        type=lambda v: [k for k in v.split(",") if k],
        default=list(FLEET_STORES),
        help="comma-separated legs of --fleet: single (one redis-server), cluster (3+3); "
        "default both, in the same run",
    )
    parser.add_argument(
        "--fleet-reads",
        type=lambda v: [k for k in v.split(",") if k],
        default=["loop"],
        help="comma-separated ways of reading the user in each --fleet leg: loop (on the event "
        "loop before deciding, the default) and/or blocking (ADTARGET_REDIS_ASYNC_READS=false, "
        "the read before 2026-12-06 20:45), each with the same Redis, in the same run",
    )
    parser.add_argument(
        "--statuses",
        action="store_true",
        help="wrk counts the status of every answer that is not 2xx and keeps one body of each "
        "(slows wrk a little; the smoke tests use it so a failure says what was answered)",
    )
    args = parser.parse_args()
    if args.fleet:
        fleet_main(args)
        return

    tmp = Path(tempfile.mkdtemp(prefix="adtarget-bench-http-"))
    try:
        data_dir = tmp / "data"
        bodies, headers = prepare(
            data_dir, args, f"{args.line_items} line items", f"{args.workers} workers"
        )
        port = free_port()
        ours = measure(
            "adtarget /v1/decisions",
            start_adtarget(data_dir, port, args.workers),
            port,
            "/readyz",
            args,
            bodies,
            headers,
            tmp,
        )
        port = free_port()
        base = measure(
            "hello-world ASGI",
            start_hello(port, args.workers),
            port,
            "/",
            args,
            bodies,
            headers,
            tmp,
        )
        redis = redis_legs(data_dir, args, bodies, headers, tmp) if args.redis else {}
        ratio = ours["rps"] / base["rps"] if base["rps"] else float("nan")
        print(
            f"ratio: adtarget = {ratio:.2f} x hello-world throughput "
            f"(target >= 8,000 req/s, p99 <= 5 ms)"
        )
        if args.json:
            print(json.dumps({"adtarget": ours, "hello": base, "ratio": ratio, "redis": redis}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepare(
    data_dir: Path,
    args: argparse.Namespace,
    catalog_label: str,
    workers: str,
    client_note: str = "",
) -> tuple[list[bytes], dict[str, str]]:
    """Catalog, snapshot and request bodies of a run, with the setup line both modes print."""
    t0 = time.perf_counter()
    key = build_catalog(data_dir, args.line_items, args.seed)
    version = build_snapshot(data_dir, args.users, args.seed)
    client = "python sockets" if _python_client() else "wrk"
    print(
        f"setup: {catalog_label}, {args.users} users (snapshot {version}) "
        f"in {time.perf_counter() - t0:.1f} s; {workers}, concurrency {args.concurrency}, "
        f"{args.seconds:g} s, load generator: {client} {client_note}".rstrip()
    )
    bodies = request_bodies(args.users, 64, args.seed)
    return bodies, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def fleet_main(args: argparse.Namespace) -> None:
    """``--fleet``: a throwaway PostgreSQL catalog, then ``fleet_leg``."""
    sys.path.insert(0, str(HERE))
    from bench_propagation import catalog

    tmp = Path(tempfile.mkdtemp(prefix="adtarget-bench-http-"))
    try:
        with catalog(True, tmp) as url:
            os.environ["ADTARGET_CATALOG_URL"] = url
            data_dir = tmp / "data"
            bodies, headers = prepare(
                data_dir,
                args,
                f"{args.line_items} line items (PostgreSQL)",
                "2 x 1 worker",
                "(one per process)",
            )
            result = fleet_leg(data_dir, args.line_items, args, bodies, headers, tmp)
            if args.json:
                print(json.dumps({"fleet": result}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
