"""A real Redis Cluster on loopback for tests and benchmarks: N masters + N replicas.

Why real processes: what the cluster client does on a ``MOVED``, a dead master and a promoted
replica is the behaviour under test; only ``redis-server --cluster-enabled yes`` and
``redis-cli --cluster create`` produce it. Ports are probed free (each node also needs its
cluster-bus port, +10000); data lives in a temp dir; nothing is persisted; ``stop`` kills every
process this object started and nothing else.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

NODE_TIMEOUT_MS = 1000
"""Cluster node timeout: a master is failed over ~1-3 s after it dies (default 15 s)."""


def available() -> str | None:
    """Why a cluster cannot start here, or ``None`` when ``redis-server``/``redis-cli`` exist."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH (apt-get install redis-server)"
    return None


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports whose cluster-bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55_000 and port not in ports and _free(port + 10_000):
            ports.append(port)
    return ports


class LocalRedisCluster:
    """Start with ``start()``; ``url`` names one node (any works); ``stop()`` tears down."""

    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        self.masters = masters
        self.replicas = replicas
        self.dir = Path(tempfile.mkdtemp(prefix="adtarget-rcluster-"))
        self.ports: list[int] = []
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """A URL naming the first node still running."""
        alive = [p for p in self.ports if self.procs[p].poll() is None]
        return f"redis://127.0.0.1:{alive[0]}/0"

    def _spawn(self, port: int) -> None:
        self.procs[port] = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.dir / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / f"redis-{port}.log"),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self, timeout: float = 30.0) -> LocalRedisCluster:
        """Start the nodes, create the cluster, wait until every slot is served."""
        n = self.masters * (1 + self.replicas)
        for _ in range(3):  # a probed port can be taken before redis binds it: retry
            self.ports = free_ports(n)
            for port in self.ports:
                self._spawn(port)
            if self._wait_ping(timeout=10):
                break
            self.stop(keep_dir=True)
        else:
            raise RuntimeError(f"redis-server nodes did not start (logs in {self.dir})")
        create = subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{p}" for p in self.ports]
            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True,
            timeout=timeout,
        )
        if create.returncode != 0:
            self.stop()
            raise RuntimeError(
                "redis-cli --cluster create failed: " + create.stdout.decode()[-800:]
            )
        self.wait_ok(timeout=timeout)
        return self

    def _cli(self, port: int, *args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            timeout=5,
        )
        return out.stdout.decode()

    def _wait_ping(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(self.procs[p].poll() is not None for p in self.ports):
                return False
            if all(self._cli(p, "ping").strip() == "PONG" for p in self.ports):
                return True
            time.sleep(0.05)
        return False

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says ``cluster_state:ok`` with all 16384 slots assigned and
        every replica has synced (a replica that never synced cannot take over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [p for p in self.ports if self.procs[p].poll() is None]
            infos = [self._cli(p, "cluster", "info") for p in alive]
            synced = all(
                "role:master" in r or "master_link_status:up" in r
                for r in (self._cli(p, "info", "replication") for p in alive)
            )
            if (
                synced
                and infos
                and all("cluster_state:ok" in i and "cluster_slots_ok:16384" in i for i in infos)
            ):
                return
            time.sleep(0.1)
        raise TimeoutError(f"Redis Cluster not ok after {timeout} s (logs in {self.dir})")

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key`` now."""
        alive = next(p for p in self.ports if self.procs[p].poll() is None)
        slot = int(self._cli(alive, "cluster", "keyslot", key).strip())
        for line in self._cli(alive, "cluster", "nodes").splitlines():
            parts = line.split()
            if "master" not in parts[2] or "fail" in parts[2]:
                continue
            for rng in parts[8:]:
                lo, _, hi = rng.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return int(parts[1].split(":")[1].split("@")[0])
        raise LookupError(f"no master for slot {slot}")

    def master_ports(self) -> list[int]:
        """The ports of the masters serving now."""
        alive = next(p for p in self.ports if self.procs[p].poll() is None)
        out = []
        for line in self._cli(alive, "cluster", "nodes").splitlines():
            parts = line.split()
            if "master" in parts[2] and "fail" not in parts[2]:
                out.append(int(parts[1].split(":")[1].split("@")[0]))
        return sorted(out)

    def migrate_slot(self, key: str, to: int) -> None:
        """Move the slot of ``key`` with its keys to the master on port ``to``, as
        ``redis-cli --cluster reshard`` does for each slot (IMPORTING/MIGRATING, ``MIGRATE``,
        then ``SETSLOT NODE`` everywhere): clients still on the old map get ``MOVED``/``ASK``."""
        source = self.master_of(key)
        slot = self._cli(source, "cluster", "keyslot", key).strip()
        src_id = self._cli(source, "cluster", "myid").strip()
        dst_id = self._cli(to, "cluster", "myid").strip()
        self._ok(to, "cluster", "setslot", slot, "importing", src_id)
        self._ok(source, "cluster", "setslot", slot, "migrating", dst_id)
        deadline = time.monotonic() + 60
        while keys := self._cli(source, "cluster", "getkeysinslot", slot, "100").split():
            reply = self._cli(
                source, "migrate", "127.0.0.1", str(to), "", "0", "5000", "keys", *keys
            )
            if time.monotonic() > deadline:  # a MIGRATE that keeps failing: say why, do not spin
                raise RuntimeError(f"slot {slot}: MIGRATE to {to} keeps failing: {reply.strip()}")
        for port in self.master_ports():
            self._ok(port, "cluster", "setslot", slot, "node", dst_id)

    def _ok(self, port: int, *args: str, within: float = 10.0) -> None:
        """Run a command that answers ``OK``, again until it does (a node that has not yet
        taken the cluster's new configuration refuses ``SETSLOT`` for a moment)."""
        deadline = time.monotonic() + within
        while (reply := self._cli(port, *args).strip()) != "OK":
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-cli -p {port} {' '.join(args)}: {reply}")
            time.sleep(0.05)

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crashed machine: no goodbye to the cluster)."""
        proc = self.procs[port]
        proc.kill()
        proc.wait(timeout=5)

    def client(self) -> Any:
        """A ``RedisCluster`` client (tests' own reads and writes)."""
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(self.url)

    def stop(self, *, keep_dir: bool = False) -> None:
        """Kill every node this object started (and remove its temp dir)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self.procs.clear()
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
