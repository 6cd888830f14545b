"""Benchmark: sharded audiences built and served on a local multi-node Ray cluster.

Beside baselines run in the same process, on the same generated population
(``population7.generate``, 7 dimensions):

- upload: the single-process job vs ``--shards S --engine ray`` (same counts asserted), rows/s,
  and the peak RSS of the busiest Ray worker process;
- sizing the 5-clause rule: one unsharded snapshot in process vs the S shard actors (p50/p99,
  equal counts asserted), and the pure fan-out cost (a no-op call to every actor);
- overlap of 10 rules through the actors; the same rule counted by DuckDB over the Parquet file;
- sizing edited rules (the age bound changes every query, the other clauses stay, as an
  audience builder sends them) both ways, so no answer is a repeat of the one before;
- ``--http``: the same sizes through a running ``adtarget serve`` with
  ``ADTARGET_AUDIENCE_BACKEND=ray`` beside ``adtarget serve`` on the single-process snapshot
  (or on the shards in process with ``--skip-single``), plus an overlap and an export;
- ``--updates N``: N real-time profile updates in an update log; sizes through shard hosts
  that follow the log beside the same live shards answered in this process (equal counts);
- ``--hosts-sweep``: sizes (same and edited rules) through 1, 2, ... ``--nodes`` shard hosts, so
  the added cost per host call can be read off;
- ``--breakdown``: where one fan-out request's time goes (the driver's submissions, the hosts
  starting, their own work, the answers coming back), for the same rule and for new edited rules;
- ``--shard-alone``: edited rules on one shard in this process (fresh caches, as a host opens
  it): the per-shard work a host does once per shard it serves;
- ``--workers-sweep``: the Ray build again on clusters of 1 and 2 one-CPU nodes (rows/s per
  worker, for the scaling line).

The served path is one shard host per node (each answering its shards' sum in one call),
shared by every serving process: with ``--http`` the Ray-backed ``adtarget serve`` runs two
workers and the bench prints how many host actors the cluster holds afterwards.

Every socket of this process and of every process it started (Ray nodes, workers, actors, the
served API) is checked to stay on loopback after each stage; one that does not fails the run.

The cluster is Ray's own ``cluster_utils.Cluster`` (head + N-1 workers), every node on
127.0.0.1. ``--skip-single`` leaves out the single-process build and sizing (100M users do not
fit one process on this machine). Run under ``flock /tmp/adtarget-heavy.lock``:
``python bench/bench_shards.py --users 10000000 --shards 4 --nodes 3``.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # drivers stay on loopback

import duckdb
import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adtarget.audience.fanout import LocalFanout  # noqa: E402
from adtarget.audience.live import encode  # noqa: E402
from adtarget.audience.ray_fanout import RayFanout  # noqa: E402
from adtarget.audience.ray_hosts import COUNT, DIGEST, QUESTION, retire_set  # noqa: E402
from adtarget.audience.service import overlap_rules, size_rule  # noqa: E402
from adtarget.audience.shard_follow import ShardFollower  # noqa: E402
from adtarget.audience.sharded import ShardedSnapshot  # noqa: E402
from adtarget.audience.store import SnapshotStore  # noqa: E402
from adtarget.audience.update_log import UpdateLog  # noqa: E402
from adtarget.catalog.db import open_catalog  # noqa: E402
from adtarget.ingest.jobs import run_upload, submit_upload  # noqa: E402
from adtarget.rules.ast import Rule  # noqa: E402
from adtarget.rules.eval_sql import to_sql  # noqa: E402
from adtarget.rules.parse import parse  # noqa: E402
from adtarget.settings import Settings  # noqa: E402
from bench_http import start_adtarget, start_own, stop  # noqa: E402
from population7 import GENRES, REGISTRY, RULE, generate  # noqa: E402

SCHEMA = {name: spec.type for name, spec in REGISTRY.items()}
OVERLAP_RULES = [f'genres has any ("{g}")' for g in GENRES[:5]] + [
    'country = "US"',
    'device in ("tv", "stick")',
    "age between 18 and 34",
    "premium = true",
    'plan in ("basic", "standard")',
]
NODE_ARGS: dict[str, Any] = {
    "node_ip_address": "127.0.0.1",
    "num_cpus": 1,
    "include_dashboard": False,
}


def pct(times: list[float], q: float) -> float:
    """Percentile in milliseconds."""
    return float(np.percentile(times, q)) * 1000


class WorkerPeak:
    """Samples the RSS of this process's descendants (Ray nodes and workers) every 0.2 s."""

    def __init__(self) -> None:
        self.peak_worker = 0
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkerPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in me.children(recursive=True):
                try:
                    rss = p.memory_info().rss
                    name = " ".join(p.cmdline()[:1])
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += rss
                if "ray::" in name or "default_worker" in name:
                    self.peak_worker = max(self.peak_worker, rss)
            self.peak_total = max(self.peak_total, total)
            time.sleep(0.2)


def duckdb_overlap(con: Any, data: Path) -> tuple[list[list[int]], float]:
    """The overlap matrix of ``OVERLAP_RULES`` in one DuckDB scan of the Parquet file."""
    wheres = [to_sql(parse(r), registry=REGISTRY, dialect="duckdb") for r in OVERLAP_RULES]
    n = len(wheres)
    cells = [(i, j) for i in range(n) for j in range(i, n)]
    cols: list[str] = []
    params: list[Any] = []
    for i, j in cells:
        cols.append(f"count_if({wheres[i][0]} AND {wheres[j][0]})")
        params += [*wheres[i][1], *wheres[j][1]]
    t = time.perf_counter()
    row = con.execute(f"SELECT {', '.join(cols)} FROM read_parquet('{data}')", params).fetchone()
    secs = time.perf_counter() - t
    out = [[0] * n for _ in range(n)]
    for (i, j), c in zip(cells, row, strict=True):
        out[i][j] = out[j][i] = int(c)
    return out, secs


def duckdb_stage(
    data: Path, matrix: list[list[int]], ray_count: int, ray_times: list[float], queries: int
) -> bool:
    """The overlap matrix in one DuckDB scan and the rule counted ``queries`` times by DuckDB
    over the Parquet file, beside the sharded answers; returns whether anything differed."""
    con = duckdb.connect()
    duck_ov, duck_ov_s = duckdb_overlap(con, data)
    print(
        f"overlap duckdb (one scan) {duck_ov_s * 1000:.0f} ms, "
        f"{'same' if duck_ov == matrix else 'DIFFERENT'} matrix"
    )
    where, params = to_sql(parse(RULE), registry=REGISTRY, dialect="duckdb")
    duck_times = []
    duck_count = -1
    for _ in range(queries):
        t = time.perf_counter()
        sql = f"SELECT count(*) FROM read_parquet('{data}') WHERE {where}"
        duck_count = con.execute(sql, params).fetchone()[0]  # type: ignore[index]
        duck_times.append(time.perf_counter() - t)
    print(
        f"size   duckdb parquet: count {duck_count:,}, p50 {pct(duck_times, 50):.1f} ms; "
        f"ray actors {pct(duck_times, 50) / pct(ray_times, 50):.0f}x faster"
    )
    return duck_ov != matrix or duck_count != ray_count


def edited_rules(n: int) -> list[str]:
    """``RULE`` with different age bounds each time: four clauses repeat, one changes. Every
    rule of a run is new (up to 1,020; before 2026-12-06 only the upper bound changed, so a
    run of more than 60 queries asked repeats, which kept answers turn into lookups)."""
    return [
        RULE.replace("between 18 and 34", f"between {18 + i // 60 % 17} and {35 + i % 60}")
        for i in range(n)
    ]


def time_edits(snapshot: Any, queries: int) -> tuple[list[int], list[float]]:
    counts: list[int] = []
    times: list[float] = []
    for rule in edited_rules(queries):
        t = time.perf_counter()
        counts.append(
            size_rule(snapshot=snapshot, rule_text=rule, registry=REGISTRY, min_size=0)["count"]
        )
        times.append(time.perf_counter() - t)
    return counts, times


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def off_loopback(procs: list[psutil.Process] | None = None) -> list[str]:
    """Sockets of ``procs`` (default: this process and its descendants) bound to, or talking
    to, a non-loopback address (what ``ss -tnp`` would show for them)."""
    if procs is None:
        me = psutil.Process()
        procs = [me, *me.children(recursive=True)]
    bad: list[str] = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            for end in (c.laddr, c.raddr):
                if end and not _loopback(end.ip):
                    bad.append(f"{proc.pid} {c.laddr} -> {c.raddr} {c.status}")
    return bad


def check_loopback(stage: str) -> int:
    """Print the sockets count and the off-loopback ones; returns how many left loopback."""
    bad = off_loopback()
    me = psutil.Process()
    socks = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            socks += len(proc.net_connections(kind="inet"))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    print(f"loopback {stage}: {socks} sockets, {len(bad)} off loopback {bad[:5]}")
    return len(bad)


def shard_sets(ray: Any) -> dict[str, int]:
    """Shard sets on the cluster: keeper name -> how many host actors it has."""
    sets: dict[str, int] = {}
    for name in ray.util.list_named_actors():
        if name.startswith("adtarget-shards-"):
            key = name.split("/")[0]
            sets[key] = sets.get(key, 0) + ("/" in name)
    return sets


def retire_all(ray: Any) -> None:
    """Stop every shard set (they are detached: they outlive the processes that used them)."""
    for name in shard_sets(ray):
        retire_set(ray, name)


def write_updates(url: str, users: int, n: int) -> int:
    """``n`` real-time updates (age, country, device changed; one in 20 a new user) logged at
    ``url``; returns the last sequence number."""
    log = UpdateLog(url)
    rng = np.random.default_rng(11)
    ids = rng.integers(0, users, size=n)
    ages = rng.integers(18, 81, size=n)
    entries = []
    for i in range(n):
        uid = f"new{i}" if i % 20 == 0 else f"u{int(ids[i])}"
        body = {"set": {"age": int(ages[i]), "country": "US", "device": "tv", "premium": False}}
        entries.append((f"bench-{i}", uid, encode(body)))
    for start in range(0, n, 5000):
        log.append(entries[start : start + 5000])
    last = log.last_seq()
    log.close()
    return last


def spy_hosts(fan: RayFanout, out: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` of every shard host for ``seconds`` (raw stacks, one file per host):
    where a host's time goes while the stage after this call runs."""
    import ray

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out.mkdir(parents=True, exist_ok=True)
    pids = ray.get([a.pid.remote() for a in fan.actors])
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(pid),
                "-d",
                f"{seconds:.0f}",
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(out / f"host-{j}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for j, pid in enumerate(pids)
    ]


def time_counts(fan: Any, rule: Rule, queries: int, **kw: Any) -> tuple[int, list[float]]:
    """``queries`` counts of ``rule`` through a fan-out (no rule parsing, no service)."""
    times: list[float] = []
    count = -1
    for _ in range(queries):
        t = time.perf_counter()
        count = fan.count(rule, **kw)
        times.append(time.perf_counter() - t)
    return count, times


def breakdown(fan: RayFanout, rules: list[Rule], label: str) -> None:
    """Where one fan-out request's time goes, p50 over ``rules`` (one request each): the
    driver submitting every host's call, the first and the last host starting it, the
    longest host's own work, and the last answer reaching the driver. Host times come from
    ``_ShardHost.ask_timed`` (wall clock: every process is on this one machine)."""
    import ray

    rows = []
    for rule in rules:
        blob = pickle.dumps(rule, protocol=pickle.HIGHEST_PROTOCOL)
        digest = hashlib.blake2b(blob, digest_size=DIGEST).digest()
        msg = QUESTION.pack(COUNT, True, 0, True) + digest + blob
        t0 = time.time()
        refs = [a.ask_timed.remote(msg) for a in fan.actors]
        t1 = time.time()
        answers = ray.get(refs)
        t2 = time.time()
        starts = [a[1] - t0 for a in answers]
        rows.append(
            (
                t2 - t0,
                t1 - t0,
                min(starts),
                max(starts),
                max(a[2] - a[1] for a in answers),
                t2 - t0 - max(a[2] - t0 for a in answers),
            )
        )
    p50 = np.percentile(np.array(rows) * 1000, 50, axis=0)
    print(
        f"where  {label}, {len(fan.actors)} hosts, p50 of {len(rules)}: request {p50[0]:.2f} ms ="
        f" submit {p50[1]:.2f}, first host starts {p50[2]:.2f}, last host starts {p50[3]:.2f},"
        f" longest host work {p50[4]:.2f}, last answer back {p50[5]:.2f} ms after it ended"
    )


def shard_alone(sharded: ShardedSnapshot, queries: int) -> None:
    """The per-shard work of an edited rule, in this process: shard 0 opened afresh (its own
    caches, as a host opens it), every edited rule new to it, beside the same shard asked
    the same rule again."""
    shard = ShardedSnapshot(sharded.path).shard(0)
    _, same = time_sizes(shard, max(10, queries // 4))
    _, edits = time_edits(shard, queries)
    print(
        f"shard  one shard in this process ({shard.num_users:,} users): edited rules p50 "
        f"{pct(edits, 50):.2f} ms, p99 {pct(edits, 99):.2f} ms; the same rule again p50 "
        f"{pct(same, 50):.2f} ms; x{sharded.num_shards} shards = "
        f"{pct(edits, 50) * sharded.num_shards:.1f} ms of work for an edited rule in all"
    )


def updates_stage(
    work: Path, sharded: ShardedSnapshot, address: str, users: int, n: int, queries: int
) -> bool:
    """Sizes with ``n`` pending updates: shard hosts following the log vs the same live shards
    in this process (what the Ray backend fell back to before the hosts followed the log)."""
    path = work / "updates-bench.sqlite3"
    for leftover in work.glob("updates-bench.sqlite3*"):
        leftover.unlink()
    url = f"sqlite:///{path}"
    t = time.perf_counter()
    last = write_updates(url, users, n)
    print(f"update log: {n:,} updates logged in {time.perf_counter() - t:.1f}s (seq {last})")
    rule = parse(RULE)
    here = ShardFollower(sharded, range(sharded.num_shards), UpdateLog(url))
    t = time.perf_counter()
    here.ensure(last)
    applied_s = time.perf_counter() - t
    local = LocalFanout(SimpleNamespace(shards=here.snapshots()))
    local_count, local_times = time_counts(local, rule, queries)
    t = time.perf_counter()
    fan = RayFanout(sharded, address=address, deadline_s=60.0, updates_url=url)
    first = fan.count(rule, seq=last)
    first_s = time.perf_counter() - t
    ray_count, ray_times = time_counts(fan, rule, queries, seq=last)
    fan.retire()
    print(
        f"size   with {n:,} pending updates, in process over the live shards: count "
        f"{local_count:,}, p50 {pct(local_times, 50):.2f} ms, p99 {pct(local_times, 99):.2f} ms"
        f" (applying the log here {applied_s:.1f}s)"
    )
    print(
        f"size   with {n:,} pending updates, shard hosts following the log: count "
        f"{ray_count:,}, p50 {pct(ray_times, 50):.2f} ms, p99 {pct(ray_times, 99):.2f} ms "
        f"(hosts started and caught up in {first_s:.1f}s)"
    )
    return local_count == ray_count == first


def http_sizes(port: int, queries: int) -> tuple[dict[str, Any], list[float]]:
    """``queries`` sizes of ``RULE`` through ``POST /v1/audiences/size`` (keep-alive)."""
    times: list[float] = []
    body: dict[str, Any] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        client.post("/v1/audiences/size", json={"rule": RULE})  # a new version's actors start
        for _ in range(queries):
            t = time.perf_counter()
            r = client.post("/v1/audiences/size", json={"rule": RULE})
            times.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise SystemExit(f"size over HTTP: {r.status_code} {r.text}")
            body = r.json()
    return body, times


def http_stage(data_dir: Path, base_dir: Path, address: str, queries: int) -> tuple[bool, int]:
    """Sizes, an overlap and an export through ``adtarget serve`` on the Ray backend, beside
    ``adtarget serve`` (embedded backend) on ``base_dir``; returns whether every count matched
    and how many sockets left loopback while the Ray-backed server answered."""
    ray_env = {
        "ADTARGET_AUDIENCE_BACKEND": "ray",
        "ADTARGET_RAY_ADDRESS": address,
        "ADTARGET_SHARD_DEADLINE_MS": "30000",
    }
    port, proc = start_own(lambda p: start_adtarget(base_dir, p, 2), "/healthz")
    try:
        base, base_times = http_sizes(port, queries)
    finally:
        stop(proc)
    port, proc = start_own(lambda p: start_adtarget(data_dir, p, 2, ray_env), "/healthz")
    try:
        via, ray_times = http_sizes(port, queries)
        for _ in range(20):  # new connections: both workers answer (each joins the set)
            httpx.post(f"http://127.0.0.1:{port}/v1/audiences/size", json={"rule": RULE})
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            t = time.perf_counter()
            ov = client.post("/v1/audiences/overlap", json={"rules": OVERLAP_RULES}).json()
            ov_s = time.perf_counter() - t
            t = time.perf_counter()
            with client.stream("POST", "/v1/audiences/export", json={"rule": RULE}) as r:
                header = r.headers.get("X-Adtarget-Count")
                lines = sum(chunk.count(b"\n") for chunk in r.iter_bytes())
            ex_s = time.perf_counter() - t
        off = check_loopback("with adtarget serve on ray")
        import ray

        sets = shard_sets(ray)
    finally:
        stop(proc)
    print(
        f"http   serve --workers 2 on ray: {len(sets)} shard set(s) on the cluster, "
        f"{sum(sets.values())} host actors"
    )
    retire_all(ray)
    print(
        f"http   serve --workers 2 (embedded backend): count {base['count']:,}, p50 "
        f"{pct(base_times, 50):.2f} ms, p99 {pct(base_times, 99):.2f} ms"
    )
    print(
        f"http   serve (ADTARGET_AUDIENCE_BACKEND=ray): count {via['count']:,}, shards "
        f"{via.get('shards')}, p50 {pct(ray_times, 50):.2f} ms, p99 {pct(ray_times, 99):.2f} ms; "
        f"added {pct(ray_times, 50) - pct(base_times, 50):+.2f} ms at p50"
    )
    print(
        f"http   overlap of {len(OVERLAP_RULES)} rules: {ov_s * 1000:.0f} ms, shards "
        f"{ov.get('shards')}; export: {lines:,} lines (header {header}) in {ex_s:.2f} s"
    )
    ok = (
        via["count"] == base["count"]
        and via.get("shards") is not None
        and header == str(via["count"])
        and lines >= via["count"]
    )
    return ok, off


def start_cluster(nodes: int, object_store_mb: int) -> tuple[Any, Any]:
    """A loopback cluster of ``nodes`` one-CPU nodes, and the connected ``ray`` module."""
    import ray
    from ray.cluster_utils import Cluster

    args = dict(NODE_ARGS, object_store_memory=object_store_mb << 20)
    cluster = Cluster(initialize_head=True, head_node_args=dict(args))
    for _ in range(nodes - 1):
        cluster.add_node(**args)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="adtarget", log_to_driver=False)
    return cluster, ray


def stop_cluster(cluster: Any, ray: Any) -> None:
    ray.shutdown()
    cluster.shutdown()


def upload(cfg: Settings, path: Path, **options: Any) -> tuple[dict[str, Any], float]:
    """Run one upload job to the end; returns the job and its wall time."""
    shutil.rmtree(cfg.data_dir, ignore_errors=True)  # a fresh data dir per run: no idempotent hit
    factory = open_catalog(cfg)
    job = submit_upload(
        settings=cfg, session_factory=factory, path=path, mode="replace", actor="bench", **options
    )
    t = time.perf_counter()
    done = run_upload(job["id"], settings=cfg, session_factory=factory)
    if done["status"] != "succeeded":
        raise SystemExit(f"upload failed: {done['error']}")
    return done, time.perf_counter() - t


def time_sizes(snapshot: Any, queries: int) -> tuple[int, list[float]]:
    times: list[float] = []
    count = -1
    for _ in range(queries):
        t = time.perf_counter()
        count = size_rule(snapshot=snapshot, rule_text=RULE, registry=REGISTRY, min_size=0)["count"]
        times.append(time.perf_counter() - t)
    return count, times


def stages(job: dict[str, Any]) -> str:
    """A Ray build's wall seconds per stage and the seconds its tasks ran (``busy``: the
    tasks' seconds over the stage's wall times the workers)."""
    report = job.get("report", {})
    secs = report.get("seconds", {})
    tasks = report.get("task_seconds", {})
    workers = int(report.get("workers", 1))
    parts = [f"{k} {v:.1f}s" for k, v in secs.items()]
    for k in ("read", "build"):
        if k in tasks and secs.get(k):
            parts.append(f"{k} tasks {tasks[k]:.1f}s (busy {tasks[k] / (secs[k] * workers):.0%})")
    return "stages: " + ", ".join(parts)


def ray_build(work: Path, data: Path, address: str, shards: int, tag: str) -> dict[str, Any]:
    cfg = Settings(data_dir=work / tag, actor="bench", ray_address=address)
    with WorkerPeak() as peak:
        job, secs = upload(cfg, data, schema=SCHEMA, shards=shards, engine="ray")
    return {"job": job, "seconds": secs, "peak": peak, "cfg": cfg}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--duckdb-queries", type=int, default=3, help="0: no DuckDB stage")
    ap.add_argument("--object-store-mb", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="keep an existing population.parquet")
    ap.add_argument(
        "--reuse-build", action="store_true", help="keep the snapshots of an earlier run"
    )
    ap.add_argument("--skip-single", action="store_true", help="no single-process baseline")
    ap.add_argument("--workers-sweep", action="store_true", help="Ray build on 1 and 2 nodes")
    ap.add_argument("--http", action="store_true", help="sizes through adtarget serve on ray")
    ap.add_argument("--updates", type=int, default=0, help="real-time updates to follow")
    ap.add_argument("--hosts-sweep", action="store_true", help="sizes with 1..nodes hosts")
    ap.add_argument("--breakdown", action="store_true", help="where a fan-out's time goes")
    ap.add_argument(
        "--shard-alone", action="store_true", help="edited rules on one shard in this process"
    )
    ap.add_argument("--py-spy", type=Path, default=None, help="profile the hosts (edited rules)")
    ap.add_argument("--py-spy-seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-shards-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "population.parquet"
    t = time.perf_counter()
    if not (args.reuse and data.exists()):
        generate(data, args.users)
    print(f"generated {args.users:,} users in {time.perf_counter() - t:.1f}s -> {data}")

    single_count = None
    single_times: list[float] = []
    single_edits: tuple[list[int], list[float]] | None = None
    off = 0
    if not args.skip_single:
        cfg = Settings(data_dir=work / "single", actor="bench")
        if args.reuse_build and SnapshotStore(cfg.snapshots_dir).current_version():
            print("build  single process: reused from an earlier run")
        else:
            job, secs = upload(cfg, data, schema=SCHEMA)
            print(
                f"build  single process: {secs:.1f}s ({job['rows_accepted'] / secs:,.0f} "
                f"rows/s), accepted {job['rows_accepted']:,}, rejected {job['rows_rejected']:,}"
            )
        single = SnapshotStore(cfg.snapshots_dir).current()
        single_count, single_times = time_sizes(single, args.queries)
        print(
            f"size   single process: count {single_count:,}, p50 {pct(single_times, 50):.2f} ms,"
            f" p99 {pct(single_times, 99):.2f} ms"
        )
        single_edits = time_edits(single, args.queries)
        print(
            f"size   single process, edited rules: p50 {pct(single_edits[1], 50):.2f} ms,"
            f" p99 {pct(single_edits[1], 99):.2f} ms"
        )

    cluster, ray = start_cluster(args.nodes, args.object_store_mb)
    try:
        address = str(cluster.address)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        print(f"cluster {args.nodes} nodes on 127.0.0.1 ({cpus} CPUs) at {address}")
        kept = Settings(data_dir=work / "ray", actor="bench", ray_address=address)
        if args.reuse_build and SnapshotStore(kept.snapshots_dir).current_version():
            built: dict[str, Any] = {"cfg": kept}
            print(f"build  ray {args.shards} shards: reused from an earlier run")
        else:
            built = ray_build(work, data, address, args.shards, "ray")
            job, secs, peak = built["job"], built["seconds"], built["peak"]
            print(
                f"build  ray {args.shards} shards: {secs:.1f}s "
                f"({job['rows_accepted'] / secs:,.0f} rows/s, {job['report']['pieces']} pieces), "
                f"accepted {job['rows_accepted']:,}, rejected {job['rows_rejected']:,}; peak RSS "
                f"per worker {peak.peak_worker / 2**20:,.0f} MB, "
                f"all Ray processes {peak.peak_total / 2**30:.1f} GB; {stages(job)}"
            )
        store = SnapshotStore(built["cfg"].snapshots_dir)
        sharded = store.current()
        assert isinstance(sharded, ShardedSnapshot)
        local_count, local_times = time_sizes(sharded, max(10, args.queries // 4))
        print(
            f"size   {args.shards} shards in process: p50 {pct(local_times, 50):.2f} ms, "
            f"p99 {pct(local_times, 99):.2f} ms"
        )
        fan = RayFanout(sharded, address=address, deadline_s=30.0)
        sharded._fanout = fan  # the served path: sizes go through the shard actors
        print(
            f"{len(fan.actors)} shard hosts (one call each per answer) on "
            f"{len(set(fan.nodes()))} nodes for {args.shards} shards"
        )
        ray_count, ray_times = time_sizes(sharded, args.queries)
        pings: list[float] = []
        for _ in range(args.queries):
            t = time.perf_counter()
            fan.nodes()
            pings.append(time.perf_counter() - t)
        print(
            f"size   ray {args.shards} shards / {len(fan.actors)} hosts: count {ray_count:,}, "
            f"p50 {pct(ray_times, 50):.2f} ms, p99 {pct(ray_times, 99):.2f} ms; "
            "fan-out alone (no-op call to every host)"
            f" p50 {pct(pings, 50):.2f} ms, p99 {pct(pings, 99):.2f} ms"
        )
        spies = spy_hosts(fan, args.py_spy, args.py_spy_seconds) if args.py_spy else []
        ray_edits = time_edits(sharded, args.queries)
        for spy in spies:
            spy.wait()
        print(
            f"size   ray {args.shards} shards, edited rules: p50 {pct(ray_edits[1], 50):.2f} ms,"
            f" p99 {pct(ray_edits[1], 99):.2f} ms"
        )
        if args.breakdown:
            same_rule = parse(RULE)
            breakdown(fan, [same_rule] * args.queries, "the same rule")
            fresh = [parse(r) for r in edited_rules(2 * args.queries)[args.queries :]]
            breakdown(fan, fresh, "edited rules")
        if single_times and single_edits:
            added = pct(ray_times, 50) - pct(single_times, 50)
            print(
                f"fan-out vs single process: {added:+.2f} ms at p50, "
                f"{pct(ray_times, 99) - pct(single_times, 99):+.2f} ms at p99; edited rules "
                f"{pct(ray_edits[1], 50) - pct(single_edits[1], 50):+.2f} ms at p50"
            )
        mismatch = ray_count != local_count or (
            single_count is not None and ray_count != single_count
        )
        mismatch |= single_edits is not None and ray_edits[0] != single_edits[0]
        if single_edits is None:  # no one-process answers: the first edits against the shards here
            here = LocalFanout(ShardedSnapshot(sharded.path))
            checked = [here.count(parse(r)) for r in edited_rules(20)]
            mismatch |= checked != ray_edits[0][:20]
            same = checked == ray_edits[0][:20]
            print(f"check  first 20 edited rules: counts equal the shards in process: {same}")
        off += check_loopback("after sizing through the actors")
        ov_times = []
        for _ in range(3):
            t = time.perf_counter()
            ov = overlap_rules(snapshot=sharded, rules=OVERLAP_RULES, min_size=0)
            ov_times.append(time.perf_counter() - t)
        print(
            f"overlap {len(OVERLAP_RULES)} rules through ray: first {ov_times[0] * 1000:.0f} ms, "
            f"again {min(ov_times[1:]) * 1000:.0f} ms (diagonal {ov['sizes'][:3]}...)"
        )
        if args.duckdb_queries:  # 0: no DuckDB scans (a minute of both cores at 100M users)
            mismatch |= duckdb_stage(data, ov["matrix"], ray_count, ray_times, args.duckdb_queries)
        fan.retire()
        if args.shard_alone:
            shard_alone(sharded, args.queries)
        if args.hosts_sweep:
            for h in range(1, args.nodes + 1):
                swept = RayFanout(sharded, address=address, deadline_s=30.0, hosts=h)
                sharded._fanout = swept
                _, h_times = time_sizes(sharded, args.queries)
                h_counts, h_edits = time_edits(sharded, args.queries)
                mismatch |= single_edits is not None and h_counts != single_edits[0]
                base = f"; one process {pct(single_times, 50):.2f} ms" if single_times else ""
                print(
                    f"hosts  {h} host(s) for {args.shards} shards: same rule p50 "
                    f"{pct(h_times, 50):.2f} ms, edited p50 {pct(h_edits, 50):.2f} ms{base}"
                )
                swept.retire()
        if args.updates:
            mismatch |= not updates_stage(
                work, sharded, address, args.users, args.updates, args.queries
            )
            off += check_loopback("after sizing with pending updates")
        if args.http:
            base_dir = work / ("sharded-local" if args.skip_single else "single")
            if args.skip_single:
                shutil.rmtree(base_dir, ignore_errors=True)
                shutil.copytree(built["cfg"].data_dir, base_dir)
            ok, off_http = http_stage(built["cfg"].data_dir, base_dir, address, args.queries)
            mismatch |= not ok
            off += off_http
    finally:
        stop_cluster(cluster, ray)

    if args.workers_sweep:
        rates = {}
        for n in (1, 2):
            cluster, ray = start_cluster(n, args.object_store_mb)
            try:
                built = ray_build(work, data, str(cluster.address), args.shards, f"sweep{n}")
                rate = built["job"]["rows_accepted"] / built["seconds"]
                rates[n] = rate
                print(
                    f"sweep  {n} worker(s): {built['seconds']:.1f}s, {rate:,.0f} rows/s, "
                    f"{rate / n:,.0f} rows/s per worker, peak RSS per worker "
                    f"{built['peak'].peak_worker / 2**20:,.0f} MB; {stages(built['job'])}"
                )
                off += check_loopback(f"after the {n}-worker build")
            finally:
                stop_cluster(cluster, ray)
        print(f"sweep  2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
    if off:
        print("SOCKETS OFF LOOPBACK", file=sys.stderr)
        return 1
    if mismatch:
        print("COUNT MISMATCH", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
