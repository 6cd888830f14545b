"""Benchmark: real-time profile updates against sizing, on one snapshot of N users.

A reader process (a serving node: it follows the update log like any API worker) sizes the
5-clause rule of ``bench_sizing.py`` in a loop, first with no updates running (the baseline,
same run), then while this process sends updates: over HTTP in batches to ``adtarget serve``,
then through ``adtarget stream``'s consumers from NATS JetStream and from a Redis Stream. The
reader records when each update sequence number became visible to it; update -> visible
latency is that time minus the moment the sender got its answer (same clock). Then the pending
updates are compacted into a new snapshot version (time, peak RSS) and the live sizes are
checked equal to the compacted snapshot's. Run: ``python bench/bench_realtime.py --users
10000000`` (under the heavy flock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adtarget.audience.build import SnapshotBuilder  # noqa: E402
from adtarget.audience.compaction import compact  # noqa: E402
from adtarget.audience.live import forget_followers  # noqa: E402
from adtarget.audience.service import size_rule  # noqa: E402
from adtarget.audience.stores import live_follower, snapshot_store_for  # noqa: E402
from adtarget.catalog.db import open_catalog  # noqa: E402
from adtarget.catalog.dimensions import register_dimensions  # noqa: E402
from adtarget.settings import Settings  # noqa: E402
from population7 import COUNTRIES, DEVICES, GENRES, REGISTRY, RULE, generate  # noqa: E402

CLI = [sys.executable, "-m", "adtarget.cli.main"]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q / 100))]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settings_for(work: Path) -> Settings:
    return Settings(
        data_dir=work / "data",
        min_audience_size=0,
        compact_after_updates=1_000_000_000,  # compaction is timed on its own, below
        updates_poll_ms=50,
        actor="bench",
    )


def make_updates(
    rng: random.Random, users: int, n: int, tag: str, start: int
) -> list[dict[str, Any]]:
    """Random updates: 1-2 dimensions set on an existing user, some unsets, deletes, new users."""
    out: list[dict[str, Any]] = []
    for i in range(start, start + n):
        r = rng.random()
        uid = f"u{rng.randrange(users)}" if r > 0.01 else f"new-{tag}-{i}"
        if r > 0.995:
            out.append({"update_id": f"{tag}-{i}", "user_id": uid, "delete": True})
            continue
        s: dict[str, Any] = {}
        pick = rng.random()
        if pick < 0.35:
            s["country"] = rng.choice(COUNTRIES)
        elif pick < 0.6:
            s["age"] = rng.randrange(18, 81)
        elif pick < 0.8:
            s["genres"] = rng.sample(GENRES, rng.randrange(1, 4))
        else:
            s["device"] = rng.choice(DEVICES)
        if rng.random() < 0.3:
            s["premium"] = rng.random() < 0.5
        up: dict[str, Any] = {"update_id": f"{tag}-{i}", "user_id": uid, "set": s}
        if rng.random() < 0.02:
            up["unset"] = ["languages"]
        out.append(up)
    return out


# -- the reader node -------------------------------------------------------------------


def reader(work: Path, out: Path, stop_file: Path) -> None:
    """Size RULE in a loop; log (time, seq) whenever the applied sequence number moves."""
    settings = settings_for(work)
    store = snapshot_store_for(settings)
    seen: list[tuple[float, int]] = []
    sizes: list[tuple[float, float, int]] = []  # (time, seconds, seq)
    last = -1
    store.current()
    stop_file.with_suffix(".ready").touch()
    while not stop_file.exists():
        t0 = time.perf_counter()
        snap = store.current()
        assert snap is not None
        size_rule(snapshot=snap, rule_text=RULE, registry=REGISTRY, min_size=0)
        dt = time.perf_counter() - t0
        now = time.time()
        seq = int(getattr(snap, "updates_seq", 0))
        if seq != last:
            seen.append((now, seq))
            last = seq
        sizes.append((now, dt, seq))
        time.sleep(0.002)
    out.write_bytes(orjson.dumps({"seen": seen, "sizes": sizes}))


# -- senders ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_phase(work: Path, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADTARGET_")}
    env.update(
        ADTARGET_DATA_DIR=str(work / "data"),
        ADTARGET_ADMIN_KEY="bench-admin",
        ADTARGET_COMPACT_AFTER_UPDATES="1000000000",
        ADTARGET_MAX_BODY_BYTES="67108864",
    )
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    commits: list[tuple[float, int, int]] = []  # (answer time, updates, cumulative accepted)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.3)
        h = {"Authorization": "Bearer bench-admin", "Content-Type": "application/json"}
        batches = [
            orjson.dumps({"updates": make_updates(rng, args.users, args.batch, "h", i)})
            for i in range(0, args.http_updates, args.batch)
        ]
        total = 0
        lock = threading.Lock()

        def send(part: list[bytes]) -> None:
            nonlocal total
            with httpx.Client(base_url=base, headers=h, timeout=60) as c:
                for body in part:
                    r = c.post("/v1/profiles/updates", content=body)
                    r.raise_for_status()
                    with lock:  # cumulative count as the log numbers them (commit order)
                        total += r.json()["accepted"]
                        commits.append((time.time(), r.json()["accepted"], total))

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.senders) as pool:
            list(pool.map(send, [batches[k :: args.senders] for k in range(args.senders)]))
        secs = time.perf_counter() - t0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return {"updates": total, "seconds": secs, "commits": commits}


def stream_phase(work: Path, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    import nats

    from adtarget.ingest.stream import consume

    tag = f"{os.getpid()}{int(time.time())}"
    stream, subject = f"adt_bench_{tag}", f"adt.bench.{tag}"
    msgs = as_messages(make_updates(rng, args.users, args.stream_updates, "s", 0), args)

    async def publish() -> None:
        nc = await nats.connect(args.nats)
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        for i in range(0, len(msgs), 2000):
            await asyncio.gather(*(js.publish(subject, m) for m in msgs[i : i + 2000]))
        await nc.close()

    async def drop() -> None:
        nc = await nats.connect(args.nats)
        await nc.jetstream().delete_stream(stream)
        await nc.close()

    asyncio.run(publish())
    commits: list[tuple[float, int, int]] = []
    settings = settings_for(work)
    snapshot_store_for(settings).current()

    def on_batch(stats: Any) -> None:
        commits.append((time.time(), 0, stats.accepted))

    t0 = time.perf_counter()
    try:
        stats = asyncio.run(
            consume(
                settings,
                url=args.nats,
                stream=stream,
                subject=subject,
                durable="bench",
                batch=max(1, args.batch // args.message_updates),
                max_messages=len(msgs),
                on_batch=on_batch,
            )
        )
    finally:
        asyncio.run(drop())
    return {"updates": stats.accepted, "seconds": time.perf_counter() - t0, "commits": commits}


def redis_phase(work: Path, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """``adtarget stream --broker redis``'s consumer over a Redis Stream of the updates."""
    import redis

    from adtarget.ingest.redis_stream import consume_redis

    key = f"adt:bench:{os.getpid()}:{int(time.time())}"
    client = redis.Redis.from_url(args.redis)
    ups = as_messages(make_updates(rng, args.users, args.redis_updates, "r", 0), args)
    for i in range(0, len(ups), 5000):
        pipe = client.pipeline(transaction=False)
        for u in ups[i : i + 5000]:
            pipe.xadd(key, {"update": u})
        pipe.execute()
    commits: list[tuple[float, int, int]] = []
    settings = settings_for(work)
    snapshot_store_for(settings).current()

    def on_batch(stats: Any) -> None:
        commits.append((time.time(), 0, stats.accepted))

    t0 = time.perf_counter()
    try:
        stats = consume_redis(
            settings,
            url=args.redis,
            stream=key,
            group="bench",
            consumer="bench-1",
            batch=max(1, args.batch // args.message_updates),
            max_messages=len(ups),
            on_batch=on_batch,
        )
    finally:
        client.delete(key)
        client.close()
    return {"updates": stats.accepted, "seconds": time.perf_counter() - t0, "commits": commits}


def as_messages(ups: list[dict[str, Any]], args: argparse.Namespace) -> list[bytes]:
    """Broker messages of ``--message-updates`` updates each (``{"updates": [...]}``), or one
    update per message when that is 1."""
    n = args.message_updates
    if n <= 1:
        return [orjson.dumps(u) for u in ups]
    return [orjson.dumps({"updates": ups[i : i + n]}) for i in range(0, len(ups), n)]


def latencies(
    commits: list[tuple[float, int, int]], first_seq: int, seen: list[tuple[float, int]]
) -> list[float]:
    """Per answered batch: when the reader first had its last sequence number, minus the answer."""
    out = []
    for answered, _n, cumulative in commits:
        seq = first_seq + cumulative
        visible = next((t for t, s in seen if s >= seq), None)
        if visible is not None:
            out.append(max(0.0, visible - answered))
    return out


def copy_data(src: Path, dst: Path) -> None:
    """A data dir copied: snapshot versions hard-linked (immutable), databases copied."""
    dst.mkdir(parents=True)
    for item in src.iterdir():
        if item.name == "snapshots":
            subprocess.run(["cp", "-al", str(item), str(dst / item.name)], check=True)
        elif item.is_dir():
            shutil.copytree(item, dst / item.name)
        else:
            shutil.copy2(item, dst / item.name)


def build(work: Path, settings: Settings, users: int) -> None:
    """Generate the population and publish it as the data dir's first snapshot."""
    data = work / "population.parquet"
    generate(data, users)
    store = snapshot_store_for(settings)
    builder = SnapshotBuilder(store=store, base=None, registry=REGISTRY, mode="replace")
    keep = ["country", "plan", "device", "genres.list.element", "languages.list.element"]
    for batch in pq.ParquetFile(data, read_dictionary=keep).iter_batches(batch_size=1_000_000):
        builder.add_batch(batch)
    store.publish(builder.finish())
    factory = open_catalog(settings)
    with factory() as session:
        register_dimensions(session, list(REGISTRY.values()))
        session.commit()
    forget_followers()
    data.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--http-updates", type=int, default=500_000)
    ap.add_argument("--stream-updates", type=int, default=300_000)
    ap.add_argument("--compact-updates", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--baseline-s", type=float, default=5.0)
    ap.add_argument("--redis-updates", type=int, default=300_000)
    ap.add_argument(
        "--message-updates",
        type=int,
        default=100,
        help='updates per broker message ({"updates": [...]}); 1 = one update per message',
    )
    ap.add_argument("--senders", type=int, default=1, help="HTTP clients sending at once")
    ap.add_argument("--nats", default="nats://127.0.0.1:4222")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep the built data dir in --workdir and start each run from a copy of it",
    )
    ap.add_argument("--reader", nargs=3, metavar=("WORK", "OUT", "STOP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.reader:
        reader(Path(args.reader[0]), Path(args.reader[1]), Path(args.reader[2]))
        return 0
    rng = random.Random(18)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = settings_for(work)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    pristine = work / f"pristine-{args.users}"
    if args.reuse and pristine.exists():
        # a copy of the data dir as built (snapshot files hard-linked: versions are immutable)
        shutil.rmtree(settings.data_dir)
        copy_data(pristine, settings.data_dir)
        print(f"setup  {args.users:,} users reused from {pristine}")
    else:
        build(work, settings, args.users)
        if args.reuse:
            shutil.rmtree(pristine, ignore_errors=True)
            copy_data(settings.data_dir, pristine)
        print(f"setup  {args.users:,} users generated and built in {time.perf_counter() - t:.1f}s")

    out, stop = work / "reader.json", work / "reader.stop"
    for leftover in (out, stop, stop.with_suffix(".ready")):  # a reused --workdir
        leftover.unlink(missing_ok=True)
    node = subprocess.Popen([sys.executable, __file__, "--reader", str(work), str(out), str(stop)])
    while not stop.with_suffix(".ready").exists():
        assert node.poll() is None, "the reader process died"
        time.sleep(0.1)
    try:
        time.sleep(args.baseline_s)
        marks: dict[str, float] = {"updates_start": time.time()}
        first_http = live_follower(settings).log.last_seq()
        http = http_phase(work, args, rng)
        marks["http_end"] = time.time()
        first_stream = live_follower(settings).log.last_seq()
        streamed = stream_phase(work, args, rng) if args.stream_updates else None
        first_redis = live_follower(settings).log.last_seq()
        redised = redis_phase(work, args, rng) if args.redis_updates else None
        marks["updates_end"] = time.time()
        time.sleep(1.5)
    finally:
        stop.touch()  # the reader writes what it saw and exits, also when a phase failed
        node.wait(timeout=120)
    got = orjson.loads(out.read_bytes())
    seen = [tuple(x) for x in got["seen"]]
    sizes = got["sizes"]
    base_ms = [s[1] * 1000 for s in sizes if s[0] < marks["updates_start"]]
    during_ms = [
        s[1] * 1000 for s in sizes if marks["updates_start"] <= s[0] < marks["updates_end"]
    ]
    print(f"size   {RULE}")
    print(
        f"       no updates running:   p50 {pct(base_ms, 50):.3f} ms, p99 {pct(base_ms, 99):.3f} ms"
        f"  ({len(base_ms)} sizings, reader process)"
    )
    print(
        f"       updates running:      p50 {pct(during_ms, 50):.3f} ms, "
        f"p99 {pct(during_ms, 99):.3f} ms  ({len(during_ms)} sizings); "
        f"ratio {pct(during_ms, 50) / pct(base_ms, 50):.2f}x"
    )
    phases = (
        ("http", http, first_http),
        ("nats", streamed, first_stream),
        ("redis", redised, first_redis),
    )
    for label, res, first in phases:
        if res is None:
            continue
        lat = latencies(res["commits"], first, seen)
        print(
            f"{label:<6} {res['updates']:,} updates in {res['seconds']:.2f}s = "
            f"{res['updates'] / res['seconds']:,.0f} updates/s accepted+applied "
            f"(batch {args.batch});"
            f" update -> visible in the reader p50 {pct(lat, 50) * 1000:.0f} ms, "
            f"p99 {pct(lat, 99) * 1000:.0f} ms ({len(lat)} batches)"
        )

    if not args.compact_updates:
        print(json.dumps({"marks": marks}))
        return 0
    # Compaction: top up the pending updates to --compact-updates, then fold them in.
    from adtarget.ingest.updates import accept_updates

    forget_followers()
    follower = live_follower(settings)
    live = snapshot_store_for(settings).current()
    assert live is not None
    pending = live.delta.applied  # type: ignore[union-attr]
    i = 0
    while pending < args.compact_updates:
        n = min(20_000, args.compact_updates - pending)
        topped = accept_updates(
            make_updates(rng, args.users, n, "c", i), registry=REGISTRY, follower=follower
        )
        pending += topped.accepted
        i += n
    live = snapshot_store_for(settings).current()
    assert live is not None
    live_count = size_rule(snapshot=live, rule_text=RULE, registry=REGISTRY, min_size=0)["count"]
    users_live = live.num_users
    rss_before = peak_rss_mb()
    t = time.perf_counter()
    done = compact(snapshot_store_for(settings), follower)
    compact_s = time.perf_counter() - t
    assert done is not None
    forget_followers()
    after = snapshot_store_for(settings).current()
    assert after is not None
    count = size_rule(snapshot=after, rule_text=RULE, registry=REGISTRY, min_size=0)["count"]
    print(
        f"compact {pending:,} pending updates ({done['users']:,} users) into {args.users:,}: "
        f"{compact_s:.1f}s, peak RSS {peak_rss_mb():,.0f} MB (was {rss_before:,.0f} MB before)"
    )
    print(
        f"exact  live count {live_count:,} / {users_live:,} users; compacted {count:,} / "
        f"{after.num_users:,}"
    )
    if count != live_count or after.num_users != users_live:
        print("COUNT MISMATCH between live deltas and the compacted snapshot", file=sys.stderr)
        return 1
    print(json.dumps({"marks": marks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
