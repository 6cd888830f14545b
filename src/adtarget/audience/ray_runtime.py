"""Everything that touches Ray: joining a cluster, shard actors, and running build tasks.

Why one module: Ray is an optional extra (``pip install -e '.[ray]'``) and costs a second or
more to import, so nothing else imports it, and this module imports it only inside functions.
The embedded default never loads it. What runs *on* the cluster is ordinary adtarget code
(``fanout.ShardWork`` in the actors, ``ingest.ray_build``'s functions in tasks); this module only
wraps it in ``ray.remote`` and turns Ray's failures into ``ShardUnavailable`` / ``IngestFailed``
naming the shard.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pickle
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from cachetools import LRUCache

from adtarget.audience.fanout import EXPORT_CHUNK, ShardWork, add_matrices
from adtarget.audience.snapshot import Snapshot
from adtarget.errors import AdtargetError, InvalidValue, ShardUnavailable
from adtarget.rules.ast import Rule

if TYPE_CHECKING:
    from adtarget.audience.sharded import ShardedSnapshot

NAMESPACE = "adtarget"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
STARTUP_S = 60.0
RULES_KEPT = 256  # distinct rules whose wire form each side keeps (an audience builder's edits)
NODE_VIEW_WAIT_S = 10.0  # how long placement waits for new nodes to reach the scheduler
# A placement-group bundle must reserve some resource; one byte of ``memory`` takes nothing a
# build task needs (a fraction of a CPU would keep 1-CPU tasks off the node).
SHARD_BUNDLE = {"memory": 1}
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


# -- serving: one actor per shard -----------------------------------------------------------


class _ShardActor:
    """One shard, memory-mapped from shared storage by whichever node runs the actor.

    Rules arrive as the bytes ``RayFanout`` pickled once per distinct rule (Ray's own argument
    serialization pickles a rule AST again for every actor on every call, ~0.25 ms each);
    the actor keeps the rules it has unpickled, so a repeated rule is a dictionary lookup.
    It also keeps its answers per rule for as long as its shard's kept results are valid
    (``ResultCache.generation``: a segment membership expiring or real-time deltas changing
    the shard start a new generation), so the same question asked again costs no bitmap work.
    """

    def __init__(self, path: str) -> None:
        self.work = ShardWork(Snapshot(path))
        self._rules: LRUCache[bytes, Any] = LRUCache(maxsize=RULES_KEPT)
        self._answers: LRUCache[tuple[str, bytes, int], Any] = LRUCache(maxsize=RULES_KEPT)

    def _rule(self, blob: bytes) -> Any:
        rule = self._rules.get(blob)
        if rule is None:
            rule = self._rules[blob] = pickle.loads(blob)  # noqa: S301 (our own driver's bytes)
        return rule

    def _answer(self, kind: str, blob: bytes, use_cache: bool, compute: Callable[[], Any]) -> Any:
        if not use_cache:
            return compute()
        key = (kind, blob, self.work.snapshot.results.generation)  # after the expiry check
        hit = self._answers.get(key)
        if hit is None:
            hit = self._answers[key] = compute()
        return hit

    def ping(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def count(self, blob: bytes, use_cache: bool = True) -> int:
        rule = self._rule(blob)
        return int(self._answer("count", blob, use_cache, lambda: self.work.count(rule, use_cache)))

    def overlap(self, blob: bytes, use_cache: bool = True) -> list[list[int]]:
        rules = self._rule(blob)
        return list(
            self._answer("overlap", blob, use_cache, lambda: self.work.overlap(rules, use_cache))
        )

    def export_count(self, blob: bytes) -> int:
        return self.work.export_count(self._rule(blob))

    def export_chunk(self, blob: bytes, start: int, size: int) -> pa.Array:
        return self.work.export_chunk(self._rule(blob), start, size)


@cache
def _actor_class() -> Any:
    ray = ray_module()
    # restarted without limit on another node when its node dies; a call that was running when
    # it died is not retried (the request answers shard_unavailable, the next one is exact)
    return ray.remote(max_restarts=-1, max_task_retries=0)(_ShardActor)


class RayFanout:
    """``Fanout`` over one Ray actor per shard, spread over the cluster's nodes.

    Args:
        snapshot: the sharded snapshot; each actor opens ``snapshot.shard_path(k)``, so the
            version directory must be on storage every node mounts at the same path.
        address: the cluster (``ADTARGET_RAY_ADDRESS``).
        deadline_s: how long one answer waits for all shards.
    """

    def __init__(
        self,
        snapshot: ShardedSnapshot,
        *,
        address: str | None,
        deadline_s: float,
        startup_s: float = STARTUP_S,
    ) -> None:
        self.ray = connect(address)
        self.snapshot = snapshot
        self.deadline_s = deadline_s
        self._blobs: LRUCache[Any, bytes] = LRUCache(maxsize=RULES_KEPT)
        cls = _actor_class()
        self._schedulable_nodes()  # so that the spread below sees every node that has joined
        group = self._spread_group(snapshot.num_shards)
        # the group goes with this fan-out (its actors too), when it is closed or collected
        self._release = weakref.finalize(self, _remove_group, group)
        self.actors = [
            cls.options(
                scheduling_strategy=self._placement(group, k), num_cpus=0, **SHARD_BUNDLE
            ).remote(str(snapshot.shard_path(k)))
            for k in range(snapshot.num_shards)
        ]
        # a new version's actors start worker processes and map their shard: the first answer
        # waits for that (once per publish) instead of failing on the request deadline
        self._gather([a.ping.remote() for a in self.actors], "its start", timeout=startup_s)

    def _spread_group(self, shards: int) -> Any:
        """One placement group, a tiny bundle per shard, spread over the nodes (best effort).

        Why a placement group: a soft node affinity per actor did not place shards as asked on
        a loopback cluster (two actors aimed at two nodes landed swapped, or both on one), and
        ``SPREAD`` per actor may stack them. Bundles of a ``SPREAD`` group are put on distinct
        nodes while there are nodes, and when a node dies Ray re-places its bundles on the
        others and restarts their actors there (``max_restarts=-1``).
        """
        from ray.util.placement_group import placement_group

        return placement_group([dict(SHARD_BUNDLE) for _ in range(shards)], strategy="SPREAD")

    @staticmethod
    def _placement(group: Any, k: int) -> Any:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=k)

    def _schedulable_nodes(self, wait_s: float = NODE_VIEW_WAIT_S) -> list[str]:
        """Alive nodes that the scheduler's resource view already holds.

        Why wait: a node joins the node table before its resources reach the scheduler; a
        spread placed before then leaves that node out and stacks its shards on the others.
        Bounded: after ``wait_s`` the nodes it knows are used.
        """
        from ray._private.state import state

        give_up = time.monotonic() + wait_s
        while True:
            alive = {n["NodeID"] for n in self.ray.nodes() if n.get("Alive")}
            known = alive & set(state.available_resources_per_node())  # type: ignore[no-untyped-call]
            if known == alive or time.monotonic() >= give_up:
                return sorted(known or alive)
            time.sleep(0.05)

    def _gather(self, refs: Sequence[Any], what: str, *, timeout: float | None = None) -> list[Any]:
        """Every shard's answer within the deadline, or ``ShardUnavailable`` naming a shard."""
        ray = self.ray
        wait_s = self.deadline_s if timeout is None else timeout
        start = time.monotonic()
        try:  # the usual case in one call; on any failure, find out which shard it was
            return list(ray.get(list(refs), timeout=wait_s))
        except (ray.exceptions.RayError, TimeoutError):
            pass
        left = max(0.0, wait_s - (time.monotonic() - start))
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=left)
        done = {r.hex() for r in ready}
        out: list[Any] = []
        for k, ref in enumerate(refs):
            if ref.hex() not in done:
                for late in refs:
                    with contextlib.suppress(Exception):  # best effort: it may have finished
                        ray.cancel(late, force=False)
                raise ShardUnavailable(
                    f"shard {k} of snapshot {self.snapshot.version} did not answer {what} "
                    f"within {wait_s:g} s; no partial count is given, retry shortly",
                    field="shard",
                    shard=k,
                )
            out.append(self._get(ray, ref, k, what))
        return out

    def _get(self, ray: Any, ref: Any, k: int, what: str) -> Any:
        try:
            return ray.get(ref, timeout=0)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, AdtargetError):
                raise cause from None
            raise self._unavailable(k, what, exc) from None
        except (ray.exceptions.RayError, TimeoutError) as exc:
            raise self._unavailable(k, what, exc) from None

    def _unavailable(self, k: int, what: str, exc: BaseException) -> ShardUnavailable:
        return ShardUnavailable(
            f"shard {k} of snapshot {self.snapshot.version} could not answer {what} "
            f"({type(exc).__name__}); Ray is restarting it, retry shortly",
            field="shard",
            shard=k,
        )

    def _blob(self, rule: Rule | tuple[Rule, ...]) -> bytes:
        """The rule pickled once, sent as bytes to every actor (Ray would pickle it per call)."""
        blob = self._blobs.get(rule)
        if blob is None:
            blob = self._blobs[rule] = pickle.dumps(rule, protocol=pickle.HIGHEST_PROTOCOL)
        return blob

    def count(self, rule: Rule, use_cache: bool = True) -> int:
        """Sum of the shard actors' counts (each actor reuses its shard's kept results)."""
        blob = self._blob(rule)
        calls = [a.count.remote(blob, use_cache) for a in self.actors]
        return sum(self._gather(calls, "a size"))

    def overlap(self, rules: Sequence[Rule], use_cache: bool = True) -> list[list[int]]:
        """Element-wise sum of the shard actors' matrices."""
        blob = self._blob(tuple(rules))
        calls = [a.overlap.remote(blob, use_cache) for a in self.actors]
        parts = self._gather(calls, "an overlap")
        return add_matrices(parts, len(rules))

    def export(self, rule: Rule, chunk_size: int = EXPORT_CHUNK) -> Iterator[pa.Array]:
        """Shard after shard, chunk after chunk; the next chunk is asked for while one is
        written, so an export streams instead of collecting every id first."""
        blob = self._blob(rule)
        counts = self._gather([a.export_count.remote(blob) for a in self.actors], "an export")
        for k, (actor, n) in enumerate(zip(self.actors, counts, strict=True)):
            starts = list(range(0, n, chunk_size))
            pending = actor.export_chunk.remote(blob, starts[0], chunk_size) if starts else None
            for i in range(len(starts)):
                ref = pending
                if i + 1 < len(starts):
                    pending = actor.export_chunk.remote(blob, starts[i + 1], chunk_size)
                [chunk] = self._gather_one(ref, k)
                yield chunk

    def _gather_one(self, ref: Any, k: int) -> list[Any]:
        ready, _ = self.ray.wait([ref], timeout=self.deadline_s)
        if not ready:
            raise ShardUnavailable(
                f"shard {k} did not send export ids within {self.deadline_s:g} s",
                field="shard",
                shard=k,
            )
        return [self._get(self.ray, ref, k, "an export")]

    def nodes(self) -> list[str]:
        """The node id each shard actor runs on (tests and the bench check the spread)."""
        return list(self._gather([a.ping.remote() for a in self.actors], "a ping"))

    def close(self) -> None:
        """Stop the actors and release their placement group (both also go when this fan-out
        is garbage collected)."""
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.actors = []
        self._release()


def _remove_group(group: Any) -> None:
    """Release a fan-out's placement group (best effort: Ray may be shut down already)."""
    with contextlib.suppress(Exception):
        from ray.util import remove_placement_group

        remove_placement_group(group)


# -- building: Ray Data for the read, one task per shard ------------------------------------


def map_pieces(
    fn: Callable[[dict[str, Any]], dict[str, Any]], items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Run ``fn`` over ``items`` with Ray Data, one block per item; results in item order.

    Ray Data retries a task whose worker or node died (its tasks default to unlimited retries
    on system failures); an exception raised by ``fn`` itself fails the whole map.
    """
    ray = ray_module()
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
