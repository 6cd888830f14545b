"""Joining a Ray cluster, and running build tasks on it: the one door to Ray.

Why this door: Ray is an optional extra (``pip install -e '.[ray]'``) and costs a second or
more to import, so it is imported only inside functions, here and in the two modules built on
this one (``audience.ray_hosts``: the shard hosts; ``audience.ray_fanout``: asking them). The
embedded default never loads it. What runs *on* the cluster is ordinary adtarget code
(``fanout.ShardWork`` in the hosts, ``ingest.ray_build``'s functions in tasks); these modules
only wrap it in ``ray.remote`` and turn Ray's failures into ``ShardUnavailable`` /
``TaskFailed`` naming the shard.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Callable
from typing import Any

from adtarget.errors import InvalidValue, ShardUnavailable

NAMESPACE = "adtarget"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_init_lock = threading.Lock()


def _is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ray_module() -> Any:
    """``import ray``, or an error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise InvalidValue(
            "Ray is not installed: pip install -e '.[ray]' (or 'adtarget[ray]')",
            field="engine",
        ) from None
    return ray


def connect(address: str | None) -> Any:
    """Join the cluster at ``address`` once per process (``None``/``local``: start one here).

    A local or loopback cluster keeps every Ray process on 127.0.0.1: the node address is given
    explicitly and ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` stops the driver from resolving
    127.0.0.1 to the host's interface address.
    """
    local = address in (None, "", "local")
    if local or _is_loopback(str(address)):
        os.environ.setdefault(LOOPBACK_ENV, "0")
    ray = ray_module()
    with _init_lock:
        if ray.is_initialized():
            return ray
        common: dict[str, Any] = {
            "namespace": NAMESPACE,
            "log_to_driver": False,
            "ignore_reinit_error": True,
            "configure_logging": False,
        }
        if local:
            ray.init(
                _node_ip_address="127.0.0.1",
                include_dashboard=False,
                object_store_memory=int(os.environ.get("ADTARGET_RAY_OBJECT_STORE", 200 << 20)),
                **common,
            )
        else:
            try:
                ray.init(address=address, **common)
            except ConnectionError as exc:
                raise ShardUnavailable(
                    f"cannot reach the Ray cluster at {address} (ADTARGET_RAY_ADDRESS): {exc}",
                    field="shard",
                ) from None
    return ray


def start_local_cluster(nodes: int, *, object_store_mb: int = 200) -> Any:
    """A multi-node Ray cluster on this machine, every node on 127.0.0.1 (Ray's own
    ``cluster_utils.Cluster``, what the tests use); returns it (``.address``, ``.shutdown()``).

    Why not ``ray start`` in a loop: worker nodes started by ``ray start`` on the head's machine
    refuse to join while ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps drivers on loopback.
    """
    if not 1 <= nodes <= 16:
        raise InvalidValue("nodes must be from 1 to 16", field="nodes")
    os.environ.setdefault(LOOPBACK_ENV, "0")
    ray_module()
    from ray.cluster_utils import Cluster

    args: dict[str, Any] = {
        "node_ip_address": "127.0.0.1",
        "num_cpus": 1,
        "object_store_memory": object_store_mb << 20,
        "include_dashboard": False,
    }
    cluster = Cluster(initialize_head=True, head_node_args=dict(args), shutdown_at_exit=True)
    for _ in range(nodes - 1):
        cluster.add_node(**args)
    cluster.wait_for_nodes()
    return cluster


# -- building: Ray Data for the read, one task per shard ------------------------------------


def map_pieces(
    fn: Callable[[dict[str, Any]], dict[str, Any]], items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Run ``fn`` over ``items`` with Ray Data, one block per item; results in item order.

    Ray Data retries a task whose worker or node died (its tasks default to unlimited retries
    on system failures); an exception raised by ``fn`` itself fails the whole map.
    """
    ray = ray_module()
    # Without per-operator resource reservation: with it, Ray Data held this one-operator map
    # to about one task at a time on a 2-CPU cluster (4 tasks of 1.5 s: 4.25 s, starts at
    # 0 / 1.0 / 1.6 / 2.7 s; without: 3.11 s, starts 0 / 0 / 1.5 / 1.5 s), so a second worker
    # sped the read up by far less than twice. The context is a copy, sealed into this dataset.
    ctx = ray.data.DataContext.get_current().copy()
    ctx.op_resource_reservation_enabled = False
    with ray.data.DataContext.current(ctx):
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        out = ds.map(fn, num_cpus=1).take_all()
    return sorted(out, key=lambda r: int(r["piece"]))


class TaskFailed(Exception):
    """A per-shard task failed after its retries (``index`` names the shard)."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"task {index} failed: {cause}")
        self.index = index
        self.cause = cause


def run_tasks(
    fn: Callable[..., Any], calls: list[tuple[Any, ...]], *, max_retries: int = 3
) -> list[Any]:
    """``fn(*args)`` for each ``args`` as Ray tasks on any node with room; results in order.

    A task whose worker or node dies is retried by Ray up to ``max_retries`` times; when one
    still fails, the others are cancelled and ``TaskFailed`` names its position.
    """
    ray = ray_module()
    remote = ray.remote(max_retries=max_retries, retry_exceptions=False, num_cpus=1)(fn)
    refs = [remote.remote(*args) for args in calls]
    out: list[Any] = [None] * len(refs)
    pending = dict(zip([r.hex() for r in refs], range(len(refs)), strict=True))
    waiting = list(refs)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        for ref in ready:
            k = pending[ref.hex()]
            try:
                out[k] = ray.get(ref)
            except ray.exceptions.RayError as exc:
                for other in waiting:
                    ray.cancel(other, force=True)
                cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
                raise TaskFailed(k, cause) from None
    return out
