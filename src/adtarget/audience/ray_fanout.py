"""Sizes, overlaps and exports of a sharded snapshot through its Ray shard hosts.

``RayFanout`` is the ``Fanout`` of the Ray backend: it joins the cluster, gets the version's
hosts from their keeper (``audience.ray_hosts``), sends each question to every host in one
call, and adds up — or raises ``ShardUnavailable`` naming the shard that did not answer within
the deadline, never a partial sum.
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from cachetools import LRUCache

from adtarget.audience.fanout import EXPORT_CHUNK, Fanout, add_matrices
from adtarget.audience.ray_hosts import (
    COUNT,
    DIGEST,
    OVERLAP,
    QUESTION,
    RETIRE_S,
    RULES_KEPT,
    _keeper_class,
    retire_set,
    set_name,
)
from adtarget.audience.ray_runtime import connect
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.errors import AdtargetError, ShardUnavailable
from adtarget.rules.ast import Rule

STARTUP_S = 60.0
NODE_VIEW_WAIT_S = 10.0  # how long placement waits for new nodes to reach the scheduler


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
