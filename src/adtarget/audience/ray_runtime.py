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
import hashlib
import ipaddress
import os
import pickle
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
from cachetools import LRUCache

from adtarget.audience.fanout import EXPORT_CHUNK, Fanout, ShardWork, add_matrices
from adtarget.audience.layout import MANIFEST
from adtarget.audience.shard_follow import ShardFollower
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import CURRENT
from adtarget.audience.update_log import UpdateLog
from adtarget.errors import AdtargetError, InvalidValue, ShardUnavailable
from adtarget.rules.ast import Rule

NAMESPACE = "adtarget"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
STARTUP_S = 60.0
RULES_KEPT = 256  # distinct rules whose wire form each side keeps (an audience builder's edits)
NODE_VIEW_WAIT_S = 10.0  # how long placement waits for new nodes to reach the scheduler
# A placement-group bundle must reserve some resource; one byte of ``memory`` takes nothing a
# build task needs (a fraction of a CPU would keep 1-CPU tasks off the node).
SHARD_BUNDLE = {"memory": 1}
QUESTION = struct.Struct("<BBqB")  # kind, use_cache, seq, whether the rule's bytes follow
COUNT, OVERLAP = 0, 1
DIGEST = 16  # bytes of the blake2b digest naming a rule
RETIRE_S = 60.0  # a version's hosts stay this long after it stopped being CURRENT
KEEPER_CHECK_S = 2.0
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


# -- serving: shard hosts, one per node, shared by every process of a version ---------------


class _ShardHost:
    """Several shards of one version on one node, answering their sum in one call.

    Why several shards per actor: the driver pays Ray's per-call cost (≈ 0.4–0.7 ms on this
    VM) once per actor, so one actor per node instead of one per shard is fewer calls for the
    same work (a node's shards share its cores either way). Each shard is memory-mapped from
    shared storage; with an update log it is followed (``ShardFollower``), so answers include
    real-time updates. Rules arrive as the bytes ``RayFanout`` pickled once per distinct rule
    (Ray's own argument serialization pickled a rule AST again for every actor on every call);
    the host keeps the rules it has unpickled and its answers per rule for as long as its
    shards' state is the same (kept results' ``generation``, each shard's update view), so
    the same question asked again costs no bitmap work.
    """

    def __init__(
        self, path: str, shards: list[int], updates_url: str | None, poll_s: float
    ) -> None:
        base = ShardedSnapshot(path)
        self.base = base
        self.mine = list(shards)
        self.follower: ShardFollower | None = None
        if updates_url:
            self.follower = ShardFollower(base, shards, UpdateLog(updates_url), poll_s=poll_s)
            self.follower.start()
        self._rules: LRUCache[bytes, Any] = LRUCache(maxsize=RULES_KEPT)  # digest or blob
        self._answers: LRUCache[tuple[Any, ...], Any] = LRUCache(maxsize=RULES_KEPT)
        self._exports: LRUCache[tuple[bytes, int], dict[int, ShardWork]] = LRUCache(maxsize=8)

    def _rule(self, blob: bytes) -> Any:
        rule = self._rules.get(blob)
        if rule is None:
            rule = self._rules[blob] = pickle.loads(blob)  # noqa: S301 (our own driver's bytes)
        return rule

    def _shards(self, seq: int) -> list[Snapshot]:
        if self.follower is None:
            return [self.base.shard(k) for k in self.mine]
        self.follower.ensure(seq)
        return self.follower.snapshots()

    def _answer(
        self, kind: str, rule_key: bytes, seq: int, use_cache: bool, fn: Callable[[ShardWork], Any]
    ) -> list[Any]:
        snaps = self._shards(seq)
        if not use_cache:
            return [fn(ShardWork(s)) for s in snaps]
        # the state every answer depends on: each shard's kept results (checked for expiry
        # first) and, when followed, its update view
        state = tuple((s.results.generation, getattr(s, "updates_seq", 0), id(s)) for s in snaps)
        key = (kind, rule_key, state)
        hit = self._answers.get(key)
        if hit is None:
            hit = self._answers[key] = [fn(ShardWork(s)) for s in snaps]
        return hit

    def ping(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def pid(self) -> int:
        """This host's process id (tests stop it with SIGSTOP)."""
        return os.getpid()

    def ask(self, msg: bytes) -> Any:
        """A size (``COUNT``) or an overlap (``OVERLAP``) of this host's shards, the question
        packed by ``RayFanout._message`` in one bytes argument (Ray's submission cost grows
        with the number of arguments: one instead of three was ≈ 0.15 ms less per call here).

        Returns ``None`` when the message names a rule by digest that this host does not
        keep (restarted, or evicted): the driver asks again with the rule's bytes.
        """
        kind, use_cache, seq, has_blob = QUESTION.unpack_from(msg)
        digest = msg[QUESTION.size : QUESTION.size + DIGEST]
        rule = self._rules.get(digest)
        if rule is None:
            if not has_blob:
                return None
            blob = msg[QUESTION.size + DIGEST :]
            rule = self._rules[digest] = pickle.loads(blob)  # noqa: S301 (our own driver's bytes)
        flag = bool(use_cache)
        if kind == COUNT:
            return sum(self._answer("count", digest, seq, flag, lambda w: w.count(rule, flag)))
        parts = self._answer("overlap", digest, seq, flag, lambda w: w.overlap(rule, flag))
        return add_matrices(parts, len(rule))

    def ask_timed(self, msg: bytes) -> tuple[Any, float, float]:
        """``ask``, with the wall-clock times it started and ended (the bench's breakdown of
        a fan-out request; comparable with the driver's clock on one machine only)."""
        start = time.time()
        answer = self.ask(msg)
        return answer, start, time.time()

    def export_counts(self, blob: bytes, seq: int = 0) -> list[tuple[int, int]]:
        """``(shard, users it exports)`` per shard; pins this state for the chunks."""
        rule = self._rule(blob)
        works = {k: ShardWork(s) for k, s in zip(self.mine, self._shards(seq), strict=True)}
        self._exports[(blob, seq)] = works
        return [(k, w.export_count(rule)) for k, w in works.items()]

    def export_chunk(self, blob: bytes, seq: int, k: int, start: int, size: int) -> pa.Array:
        """User ids ``start .. start+size`` of shard ``k``'s matches, as pinned above."""
        works = self._exports.get((blob, seq))
        if works is None:  # restarted meanwhile: the state as of now
            works = {k: ShardWork(s) for k, s in zip(self.mine, self._shards(seq), strict=True)}
            self._exports[(blob, seq)] = works
        return works[k].export_chunk(self._rule(blob), start, size)


class _VersionKeeper:
    """Creates (once per cluster) the shard hosts of one snapshot version, and retires them.

    Why a named, detached actor: every serving process (``adtarget serve --workers N``, and
    API nodes on other machines) asks for the keeper by the version's name and gets the same
    hosts, so N workers hold one copy of the shards, not N. Ray serializes the get-or-create
    of a named actor, so two workers starting at once still make one set. The hosts outlive
    the process that created them; the keeper retires them (and itself) once its version
    has not been ``CURRENT`` for ``retire_s`` or its directory changed or went away.
    """

    def __init__(
        self,
        path: str,
        name: str,
        hosts: int,
        updates_url: str | None,
        poll_s: float,
        retire_s: float,
    ) -> None:
        from ray.util.placement_group import get_placement_group, placement_group

        self.path, self.name, self.retire_s = Path(path), name, retire_s
        self.fingerprint = _fingerprint(self.path)
        shards = ShardedSnapshot(path).num_shards
        try:  # restarted on another node: the group and hosts of before
            group = get_placement_group(name)
        except ValueError:
            group = placement_group(
                [dict(SHARD_BUNDLE) for _ in range(hosts)],
                strategy="SPREAD",
                name=name,
                lifetime="detached",
            )
        cls = _host_class()
        self.hosts = [
            cls.options(
                name=f"{name}/{j}",
                get_if_exists=True,
                lifetime="detached",
                num_cpus=0,
                scheduling_strategy=_placement(group, j),
                **SHARD_BUNDLE,
            ).remote(path, list(range(j, shards, hosts)), updates_url, poll_s)
            for j in range(hosts)
        ]
        self.assignment = [list(range(j, shards, hosts)) for j in range(hosts)]
        threading.Thread(target=self._watch, name="adtarget-keeper", daemon=True).start()

    def hosts_of(self) -> tuple[list[Any], list[list[int]]]:
        """The host handles and the shards each serves."""
        return self.hosts, self.assignment

    def _watch(self) -> None:
        stale_since: float | None = None
        while True:
            time.sleep(KEEPER_CHECK_S)
            if _fingerprint(self.path) != self.fingerprint:
                break  # the directory was replaced or removed: these shards are not it
            if _is_current(self.path):
                stale_since = None
                continue
            stale_since = stale_since or time.monotonic()
            if time.monotonic() - stale_since >= self.retire_s:
                break
        import ray

        retire(ray, self.name, self.hosts)
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def _fingerprint(path: Path) -> str | None:
    """What identifies one version directory's content: its top manifest's bytes."""
    try:
        return hashlib.sha1((path / MANIFEST).read_bytes(), usedforsecurity=False).hexdigest()
    except OSError:
        return None


def _is_current(path: Path) -> bool:
    """Whether the store's ``CURRENT`` names this version (a directory outside a store is)."""
    try:
        return (path.parent / CURRENT).read_text().strip() == path.name
    except FileNotFoundError:
        return True


def set_name(path: Path, updates_url: str | None = None) -> str:
    """The cluster-wide name of one version's shard set: its path, manifest and update log,
    hashed (a data dir wiped and built again gets new hosts, not the old files' ones; hosts
    following a log are not handed to a process that asked for hosts following none)."""
    digest = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False)
    digest.update((_fingerprint(path) or "").encode())
    digest.update(f"\0{updates_url or ''}".encode())
    return f"adtarget-shards-{digest.hexdigest()[:20]}"


def retire(ray: Any, name: str, hosts: Sequence[Any] | None = None) -> None:
    """Stop a version's shard hosts and release their placement group (best effort; the
    hosts are looked up by name when not given)."""
    from ray.util.placement_group import get_placement_group, remove_placement_group

    if hosts is None:
        names = [n for n in ray.util.list_named_actors() if n.startswith(f"{name}/")]
        hosts = [ray.get_actor(n) for n in names]
    for handle in hosts:
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
    with contextlib.suppress(Exception):
        remove_placement_group(get_placement_group(name))


def retire_set(ray: Any, name: str) -> None:
    """Stop the keeper named ``name`` and the set it keeps (tests, the bench)."""
    with contextlib.suppress(Exception):
        ray.kill(ray.get_actor(name), no_restart=True)
    retire(ray, name)


@cache
def _host_class() -> Any:
    ray = ray_module()

    class ShardHost(_ShardHost):
        # No task events for the per-request calls: each would be one more record buffered
        # and sent to the GCS per host per answer (≈ 0.02-0.08 ms less per 3-host request
        # here, interleaved A/B); the hosts' creation and exports still report theirs.
        @ray.method(enable_task_events=False)  # type: ignore[untyped-decorator]
        def ask(self, msg: bytes) -> Any:
            """``_ShardHost.ask``."""
            return super().ask(msg)

    # restarted without limit on another node when its node dies; a call that was running when
    # it died is not retried (the request answers shard_unavailable, the next one is exact)
    return ray.remote(max_restarts=-1, max_task_retries=0)(ShardHost)


@cache
def _keeper_class() -> Any:
    ray = ray_module()
    return ray.remote(max_restarts=-1, max_task_retries=-1)(_VersionKeeper)


def _placement(group: Any, k: int) -> Any:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=k)


class RayFanout:
    """``Fanout`` over the shard hosts of one version (one per node), shared cluster-wide.

    Args:
        snapshot: the sharded snapshot; each host opens its shards under ``snapshot.path``,
            so the version directory must be on storage every node mounts at the same path.
        address: the cluster (``ADTARGET_RAY_ADDRESS``).
        deadline_s: how long one answer waits for all shards.
        updates_url: the profile update log the hosts follow (``None``: they serve the
            published shards only, and a live snapshot with pending updates is answered in
            process).
        hosts: how many shard hosts (default: one per node, at most one per shard).
    """

    def __init__(
        self,
        snapshot: ShardedSnapshot,
        *,
        address: str | None,
        deadline_s: float,
        startup_s: float = STARTUP_S,
        updates_url: str | None = None,
        poll_s: float = 0.1,
        hosts: int | None = None,
        retire_s: float = RETIRE_S,
    ) -> None:
        self.ray = connect(address)
        self.snapshot = snapshot
        self.deadline_s = deadline_s
        self.follows_updates = updates_url is not None
        self._blobs: LRUCache[Any, bytes] = LRUCache(maxsize=RULES_KEPT)
        self._digests: LRUCache[bytes, bytes] = LRUCache(maxsize=RULES_KEPT)
        """Rules every host was sent (by their bytes): later asked by digest alone."""
        self.name = set_name(snapshot.path, updates_url)
        if hosts is None:  # so the spread sees every node that has joined
            hosts = len(self._schedulable_nodes())
        hosts = max(1, min(hosts, snapshot.num_shards))
        keeper = (
            _keeper_class()
            .options(name=self.name, get_if_exists=True, lifetime="detached", num_cpus=0)
            .remote(str(snapshot.path), self.name, hosts, updates_url, poll_s, retire_s)
        )
        # a new version's hosts start worker processes and map their shards: the first answer
        # waits for that (once per version, cluster-wide) instead of failing on the deadline
        self.actors, self.assignment = self._gather(
            [keeper.hosts_of.remote()], "its start", timeout=startup_s
        )[0]
        self._gather([a.ping.remote() for a in self.actors], "its start", timeout=startup_s)

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

    def _shard_of_call(self, j: int) -> int:
        assignment = getattr(self, "assignment", None)
        return assignment[j][0] if assignment else j

    def _gather(
        self,
        refs: Sequence[Any],
        what: str,
        *,
        timeout: float | None = None,
        hosts: Sequence[int] | None = None,
    ) -> list[Any]:
        """Every host's answer within the deadline, or ``ShardUnavailable`` naming a shard."""
        if not refs:  # closed or retired: no hosts is no answer, never a sum of nothing
            raise ShardUnavailable(
                f"the shard hosts of snapshot {self.snapshot.version} were released; retry",
                field="shard",
                shard=0,
            )
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
        for j, ref in enumerate(refs):
            k = self._shard_of_call(j if hosts is None else hosts[j])
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
        """The rule pickled once, sent as bytes to every host (Ray would pickle it per call)."""
        blob = self._blobs.get(rule)
        if blob is None:
            blob = self._blobs[rule] = pickle.dumps(rule, protocol=pickle.HIGHEST_PROTOCOL)
        return blob

    def _ask(
        self, kind: int, rule: Rule | tuple[Rule, ...], use_cache: bool, seq: int
    ) -> list[Any]:
        """Every host's answer to one question: the rule named by its digest once the hosts
        have its bytes (a host that lost them answers ``None`` and is asked again with them)."""
        blob = self._blob(rule)
        digest = self._digests.get(blob)
        known = digest is not None
        if digest is None:
            digest = hashlib.blake2b(blob, digest_size=DIGEST).digest()
        what = "a size" if kind == COUNT else "an overlap"
        head = QUESTION.pack(kind, use_cache, seq, not known) + digest
        msg = head if known else head + blob
        answers = self._gather([a.ask.remote(msg) for a in self.actors], what)
        lost = [j for j, a in enumerate(answers) if a is None]
        if lost:
            full = QUESTION.pack(kind, use_cache, seq, True) + digest + blob
            again = self._gather([self.actors[j].ask.remote(full) for j in lost], what, hosts=lost)
            for j, answer in zip(lost, again, strict=True):
                answers[j] = answer
        self._digests[blob] = digest
        return answers

    def at_seq(self, seq: int) -> Fanout | None:
        """This fan-out answering as of at least update ``seq`` (``None`` when the hosts do
        not follow the update log)."""
        return _AtSeq(self, seq) if self.follows_updates else None

    def count(self, rule: Rule, use_cache: bool = True, seq: int = 0) -> int:
        """Sum of the hosts' counts (each host reuses its shards' kept results)."""
        return sum(self._ask(COUNT, rule, use_cache, seq))

    def overlap(
        self, rules: Sequence[Rule], use_cache: bool = True, seq: int = 0
    ) -> list[list[int]]:
        """Element-wise sum of the hosts' matrices."""
        return add_matrices(self._ask(OVERLAP, tuple(rules), use_cache, seq), len(rules))

    def export(
        self, rule: Rule, chunk_size: int = EXPORT_CHUNK, seq: int = 0
    ) -> Iterator[pa.Array]:
        """Shard after shard, chunk after chunk; the next chunk is asked for while one is
        written, so an export streams instead of collecting every id first."""
        blob = self._blob(rule)
        counts = self._gather([a.export_counts.remote(blob, seq) for a in self.actors], "an export")
        jobs = [
            (actor, k, start)
            for actor, per_shard in zip(self.actors, counts, strict=True)
            for k, n in per_shard
            for start in range(0, n, chunk_size)
        ]
        pending = None
        for i, (actor, k, start) in enumerate(jobs):
            ref = pending or actor.export_chunk.remote(blob, seq, k, start, chunk_size)
            pending = None
            if i + 1 < len(jobs):
                nxt_actor, nxt_k, nxt_start = jobs[i + 1]
                pending = nxt_actor.export_chunk.remote(blob, seq, nxt_k, nxt_start, chunk_size)
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
        """The node id each shard is served on (tests and the bench check the spread)."""
        per_host = self._gather([a.ping.remote() for a in self.actors], "a ping")
        out = [""] * self.snapshot.num_shards
        for node, shards in zip(per_host, self.assignment, strict=True):
            for k in shards:
                out[k] = node
        return out

    def close(self) -> None:
        """Drop this process's handles; the hosts stay for the other processes serving this
        version (the keeper retires them once the version is no longer current)."""
        self.actors = []

    def retire(self) -> None:
        """Stop this version's hosts, keeper and placement group cluster-wide (tests, the
        bench; serving processes leave it to the keeper)."""
        retire_set(self.ray, self.name)
        self.actors = []


class _AtSeq:
    """A ``RayFanout`` whose answers include every update up to ``seq`` (a live snapshot's)."""

    def __init__(self, fan: RayFanout, seq: int) -> None:
        self.fan, self.seq = fan, seq

    def count(self, rule: Rule, use_cache: bool = True) -> int:
        return self.fan.count(rule, use_cache, self.seq)

    def overlap(self, rules: Sequence[Rule], use_cache: bool = True) -> list[list[int]]:
        return self.fan.overlap(rules, use_cache, self.seq)

    def export(self, rule: Rule, chunk_size: int = EXPORT_CHUNK) -> Iterator[pa.Array]:
        return self.fan.export(rule, chunk_size, self.seq)

    def close(self) -> None:
        """Nothing of its own to release."""


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
