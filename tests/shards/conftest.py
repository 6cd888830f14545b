"""A real multi-node Ray cluster on this machine (Ray's own ``cluster_utils.Cluster``).

Why session-scoped: starting three nodes costs ~6-10 s and ~1 GB, so every Ray test of one
pytest process shares one cluster (under ``-n 2`` each worker that gets a Ray test starts its
own: ``--dist loadgroup`` would pin them to one, but it does not group under pytest 9 here).
Every node listens on 127.0.0.1 only; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps the driver
from resolving 127.0.0.1 to the host's interface address. Object stores are small (100 MB).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

NODE_ARGS: dict[str, Any] = {
    "node_ip_address": "127.0.0.1",
    "num_cpus": 1,
    "object_store_memory": 100 * 1024 * 1024,
    "include_dashboard": False,
}


class RayCluster:
    """The cluster, its worker nodes, and the driver connection of this test process."""

    def __init__(self) -> None:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray
        from ray.cluster_utils import Cluster

        self.ray = ray
        self.cluster = Cluster(initialize_head=True, head_node_args=dict(NODE_ARGS))
        self.workers = [self.cluster.add_node(**NODE_ARGS) for _ in range(2)]
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address, namespace="adtarget", log_to_driver=False)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def alive_nodes(self) -> int:
        return sum(1 for n in self.ray.nodes() if n["Alive"])

    def remove_worker(self, node: Any) -> None:
        self.workers.remove(node)
        self.cluster.remove_node(node)

    def add_worker(self) -> Any:
        node = self.cluster.add_node(**NODE_ARGS)
        self.workers.append(node)
        self.cluster.wait_for_nodes()
        return node

    def shard_sets(self) -> list[str]:
        """Names of the shard-set keepers alive on the cluster (one per served version)."""
        names = self.ray.util.list_named_actors()
        return sorted({n.split("/")[0] for n in names if n.startswith("adtarget-shards-")})

    def retire_all(self) -> None:
        """Stop every version's shard hosts (they are detached: they outlive a test)."""
        from adtarget.audience.ray_hosts import retire_set

        for name in self.shard_sets():
            retire_set(self.ray, name)

    def shutdown(self) -> None:
        self.ray.shutdown()
        self.cluster.shutdown()


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def non_loopback_connections() -> list[str]:
    """Sockets of this process and every process it started (the Ray nodes and their
    workers) that are bound to, or talk to, anything but loopback."""
    me = psutil.Process()
    bad: list[str] = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            for end in (c.laddr, c.raddr):
                if end and not _loopback(end.ip):
                    bad.append(f"{name}[{proc.pid}] {c.laddr} -> {c.raddr} {c.status}")
    return bad


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """Three Ray nodes (head + 2 workers) on loopback, shared by this process's Ray tests."""
    cluster = RayCluster()
    try:
        yield cluster
    finally:
        cluster.shutdown()
