"""Shard hosts: the Ray actors that hold a version's shards and answer for them.

One host per node serves several shards of one version (``_ShardHost``); one named, detached
keeper per version (``_VersionKeeper``) creates them once for the whole cluster, so every
serving process gets the same hosts, and retires them once the version is no longer
``CURRENT``. Ray is imported inside functions only (``audience.ray_runtime``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import struct
import threading
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
from cachetools import LRUCache

from adtarget.audience.fanout import ShardWork, add_matrices
from adtarget.audience.layout import MANIFEST
from adtarget.audience.ray_runtime import ray_module
from adtarget.audience.shard_follow import ShardFollower
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import CURRENT
from adtarget.audience.update_log import UpdateLog

RULES_KEPT = 256  # distinct rules whose wire form each side keeps (an audience builder's edits)
# A placement-group bundle must reserve some resource; one byte of ``memory`` takes nothing a
# build task needs (a fraction of a CPU would keep 1-CPU tasks off the node).
SHARD_BUNDLE = {"memory": 1}
QUESTION = struct.Struct("<BBqB")  # kind, use_cache, seq, whether the rule's bytes follow
COUNT, OVERLAP = 0, 1
DIGEST = 16  # bytes of the blake2b digest naming a rule
RETIRE_S = 60.0  # a version's hosts stay this long after it stopped being CURRENT
KEEPER_CHECK_S = 2.0


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
        packed by ``RayFanout._ask`` in one bytes argument (Ray's submission cost grows
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
