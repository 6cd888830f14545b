"""Benchmark: Ray's own cost per call on a local multi-node cluster, and what changes it.

What a sized answer pays on the Ray backend besides the hosts' work is one Ray actor call per
shard host (``audience/ray_fanout.py``). This measures that call alone: a no-op fan-out from
this process (the driver, as ``adtarget serve`` is) to one trivial actor per node (``ask``
takes one small bytes argument and reports no task events, as ``ShardHost.ask`` does), on
Ray's own ``cluster_utils.Cluster`` with every node on 127.0.0.1 and one CPU each. It prints
the fan-out's p50/p90 and the CPU it costs per fan-out in each kind of process (this driver,
the actors, the raylets, the GCS, the rest), with the CPU of an idle window of the same length
beside it (the cluster's background timers), so a change can be judged by the CPU it saves
as well as by a latency that moves with the load of the machine.

Two ways to compare:

- ``--config LABEL:RAY_x=1,RAY_y=2`` (repeatable): each run is a fresh cluster in a child
  process whose environment carries those variables, so every Ray process (GCS, raylets,
  workers, the driver) reads them at start (``actor=async`` in the list chooses the actor's
  kind for that configuration instead); the configurations alternate, ``--rounds``
  times, in ABBA order, and the summary gives each one's median p50 and CPU per fan-out.
- ``--toggle pin-driver|pin-hosts|hosts-nice0``: one cluster, blocks of 50 fan-outs
  alternating without / with the change (every thread of this process, or of each actor,
  kept on one CPU; the actors at nice 0 instead of Ray's default 15), so both halves see the
  same load.

``--actor sync|threaded|async`` chooses the actor's kind (Ray runs a sync actor's calls on its
main thread; ``max_concurrency=2`` on a thread pool; an async actor on an event loop).
Every socket of every process started is checked to stay on loopback. Run under
``flock /tmp/adtarget-heavy.lock``: ``python bench/bench_ray_calls.py --rounds 4
--config default: --config quiet:RAY_event_stats=0``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_shards import off_loopback  # noqa: E402  (the same check as the sizing bench)

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # the driver stays on loopback

NODE_ARGS: dict[str, Any] = {
    "node_ip_address": "127.0.0.1",
    "num_cpus": 1,
    "object_store_memory": 100 << 20,
    "include_dashboard": False,
}
# a question naming a rule the hosts keep: the packed header and the rule's 16-byte digest
MESSAGE = bytes(27)
BLOCK = 50
TOGGLES = ("pin-driver", "pin-hosts", "hosts-nice0")


def kind_of(proc: psutil.Process, me: int, actors: set[int]) -> str:
    """Which kind of Ray process ``proc`` is, for the CPU table."""
    if proc.pid == me:
        return "driver"
    if proc.pid in actors:
        return "actors"
    try:
        name, cmd = proc.name(), " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    if "gcs_server" in name or "gcs_server" in cmd:
        return "gcs"
    if name == "raylet" or "raylet/raylet" in cmd:
        return "raylets"
    return "other"


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    """User + system CPU seconds of each process still alive."""
    out: dict[int, float] = {}
    for proc in procs:
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[proc.pid] = t.user + t.system
    return out


def per_kind(
    kinds: dict[int, str], before: dict[int, float], after: dict[int, float], n: int
) -> dict[str, float]:
    """CPU milliseconds per fan-out of each kind of process between two readings."""
    out: dict[str, float] = {}
    for pid, kind in kinds.items():
        if pid in before and pid in after:
            out[kind] = out.get(kind, 0.0) + (after[pid] - before[pid]) * 1000 / n
    return {k: round(v, 3) for k, v in sorted(out.items())}


def pin(pid: int, cpus: set[int]) -> None:
    """Keep every thread of ``pid`` on ``cpus`` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that ended meanwhile
            continue


def renice(pid: int, nice: int) -> None:
    """Set the nice value of every thread of ``pid`` (Linux niceness is per thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), nice)
        except OSError:
            continue


def actor_class(ray: Any, kind: str) -> Any:
    """A trivial actor of ``kind`` whose ``ask`` is what a shard host's costs in Ray."""

    class Sync:
        @ray.method(enable_task_events=False)  # type: ignore[untyped-decorator]
        def ask(self, msg: bytes) -> int:
            return len(msg)

        def pid(self) -> int:
            return os.getpid()

    class Async:
        @ray.method(enable_task_events=False)  # type: ignore[untyped-decorator]
        async def ask(self, msg: bytes) -> int:
            return len(msg)

        def pid(self) -> int:
            return os.getpid()

    options: dict[str, Any] = {"num_cpus": 0}
    if kind == "threaded":
        options["max_concurrency"] = 2
    return ray.remote(**options)(Async if kind == "async" else Sync)


def run_cluster(args: argparse.Namespace) -> dict[str, Any]:
    """One fresh cluster, one actor per node; the fan-out measured (and toggled)."""
    ray: Any = importlib.import_module("ray")
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cluster: Any = Cluster(initialize_head=True, head_node_args=dict(NODE_ARGS))
    for _ in range(args.nodes - 1):
        cluster.add_node(**NODE_ARGS)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="bench-ray-calls", log_to_driver=False)
    try:
        cls = actor_class(ray, args.actor)
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        actors = [
            cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
            for n in nodes
        ]
        pids = ray.get([a.pid.remote() for a in actors])

        def fan_out() -> float:
            t = time.perf_counter()
            ray.get([a.ask.remote(MESSAGE) for a in actors])
            return time.perf_counter() - t

        for _ in range(args.warm):
            fan_out()
        time.sleep(0.5)
        me = psutil.Process()
        procs = [me, *me.children(recursive=True)]
        kinds = {p.pid: kind_of(p, me.pid, set(pids)) for p in procs}
        nice = sorted({psutil.Process(p).nice() for p in pids})
        result: dict[str, Any] = {
            "label": args.label,
            "load": round(os.getloadavg()[0], 2),
            "actor_nice": nice,
            "off_loopback": off_loopback(procs),
        }
        if args.toggle:
            result["toggle"] = toggled(args, fan_out, pids, procs, kinds)
            return result
        before = cpu_seconds(procs)
        t0 = time.perf_counter()
        times = [fan_out() for _ in range(args.calls)]
        wall = time.perf_counter() - t0
        busy = cpu_seconds(procs)
        time.sleep(wall)  # the same length idle: the cluster's background CPU
        idle = cpu_seconds(procs)
        ms = np.array(times) * 1000
        result.update(
            p50=round(float(np.percentile(ms, 50)), 3),
            p90=round(float(np.percentile(ms, 90)), 3),
            cpu=per_kind(kinds, before, busy, args.calls),
            idle_cpu=per_kind(kinds, busy, idle, args.calls),
        )
        return result
    finally:
        ray.shutdown()
        cluster.shutdown()


def toggled(
    args: argparse.Namespace,
    fan_out: Any,
    pids: list[int],
    procs: list[psutil.Process],
    kinds: dict[int, str],
) -> dict[str, Any]:
    """Blocks of fan-outs alternating without / with ``args.toggle``, on one cluster."""
    every = set(range(os.cpu_count() or 1))

    def switch(on: bool) -> None:
        if args.toggle == "pin-driver":
            pin(os.getpid(), {0} if on else every)
        elif args.toggle == "pin-hosts":
            for j, pid in enumerate(pids):
                pin(pid, {(j + 1) % len(every)} if on else every)
        elif args.toggle == "hosts-nice0":
            for pid in pids:
                renice(pid, 0 if on else 15)

    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, dict[str, float]] = {False: {}, True: {}}
    for block in range(max(2, args.calls // BLOCK)):
        on = block % 2 == 1
        switch(on)
        before = cpu_seconds(procs)
        times[on] += [fan_out() for _ in range(BLOCK)]
        for kind, ms in per_kind(kinds, before, cpu_seconds(procs), 1).items():
            cpu[on][kind] = cpu[on].get(kind, 0.0) + ms
    switch(False)
    out = {}
    for on in (False, True):
        arr = np.array(times[on]) * 1000
        out["on" if on else "off"] = {
            "p50": round(float(np.percentile(arr, 50)), 3),
            "p90": round(float(np.percentile(arr, 90)), 3),
            "cpu": {k: round(v / len(arr), 3) for k, v in sorted(cpu[on].items())},
        }
    return out


def child(args: argparse.Namespace) -> int:
    print("RESULT " + json.dumps(run_cluster(args)), flush=True)
    return 0


def spawn(args: argparse.Namespace, label: str, env: dict[str, str]) -> dict[str, Any] | None:
    """One run in a fresh process with ``env`` added (read by every Ray process it starts)."""
    cmd = [sys.executable, __file__, "--child", "--label", label, "--nodes", str(args.nodes)]
    actor = env.pop("actor", args.actor)
    cmd += ["--calls", str(args.calls), "--warm", str(args.warm), "--actor", actor]
    cmd += ["--toggle", args.toggle] if args.toggle else []
    done = subprocess.run(  # noqa: S603 (this very script)
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **env}, check=False
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        print(f"{label}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(lines[0].removeprefix("RESULT "))
    return result


def parse_config(spec: str) -> tuple[str, dict[str, str]]:
    """``LABEL:K=V,K=V`` -> the label and the variables (``actor=KIND``: the actor's kind)."""
    label, _, rest = spec.partition(":")
    env = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    if env.get("actor", "sync") not in ("sync", "threaded", "async"):
        raise SystemExit(f"--config {label}: actor must be sync, threaded or async")
    bad = [k for k in env if k != "actor" and not k.startswith(("RAY_", "GRPC_"))]
    if bad:
        raise SystemExit(f"--config {label}: not a Ray or gRPC variable: {bad}")
    return label, env


def report(result: dict[str, Any], round_: int) -> None:
    head = f"round {round_} {result['label']:>10} load {result['load']:.2f}"
    if "toggle" in result:
        for side in ("off", "on"):
            s = result["toggle"][side]
            print(
                f"{head} {side:>3}: p50 {s['p50']:.3f} ms, p90 {s['p90']:.3f} ms, "
                f"CPU per fan-out {s['cpu']} (total {sum(s['cpu'].values()):.2f} ms)"
            )
        return
    print(
        f"{head}: p50 {result['p50']:.3f} ms, p90 {result['p90']:.3f} ms, CPU per fan-out "
        f"{result['cpu']} (total {sum(result['cpu'].values()):.2f} ms; idle "
        f"{sum(result['idle_cpu'].values()):.2f} ms), actors' nice {result['actor_nice']}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--label", default="default", help=argparse.SUPPRESS)
    ap.add_argument("--config", action="append", default=[], help="LABEL:RAY_x=v,RAY_y=w")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--calls", type=int, default=1500)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--actor", choices=("sync", "threaded", "async"), default="sync")
    ap.add_argument("--toggle", choices=TOGGLES, default="")
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    configs = [parse_config(c) for c in args.config] or [("default", {})]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in configs}
    off = 0
    for r in range(args.rounds):
        for label, env in configs if r % 2 == 0 else configs[::-1]:
            result = spawn(args, label, dict(env))
            if result is None:
                return 1
            off += len(result["off_loopback"])
            runs[label].append(result)
            report(result, r)
    if not args.toggle:
        print("summary (median over rounds):")
        for label, results in runs.items():
            p50 = float(np.median([x["p50"] for x in results]))
            cpu = float(np.median([sum(x["cpu"].values()) for x in results]))
            idle = float(np.median([sum(x["idle_cpu"].values()) for x in results]))
            print(
                f"  {label:>10}: p50 {p50:.3f} ms (runs {[x['p50'] for x in results]}), "
                f"CPU per fan-out {cpu:.2f} ms (idle window {idle:.2f} ms)"
            )
    if off:
        print("SOCKETS OFF LOOPBACK", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
