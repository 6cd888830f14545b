"""The live audience: the current base snapshot plus every logged update not yet folded into it.

Why a follower per process: each API worker, CLI run and stream consumer serves sizes and
decisions from its own memory-mapped snapshot, so each keeps its own delta, built by replaying
the log after the base's ``updates_through`` and kept current by (a) applying the updates this
process just logged, at once, and (b) polling the log every ``poll_s`` for updates other
processes or nodes logged. A version switch (upload, undo, rollback, compaction) replays the
log after the new base's own ``updates_through``, which is what makes those paths keep updates.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from adtarget.audience.carry import carry_results
from adtarget.audience.delta import Delta, DeltaView, Update, UserState
from adtarget.audience.gcpause import gc_paused
from adtarget.audience.live_snapshot import LiveSnapshot
from adtarget.audience.results import ResultCache
from adtarget.audience.sharded import AnySnapshot, ShardedSnapshot
from adtarget.audience.sharded_live import LiveShardedSnapshot, ShardedDelta, ShardResults
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.store import UPDATES_THROUGH as THROUGH
from adtarget.audience.update_log import LoggedUpdate, UpdateLog

log = logging.getLogger("adtarget.audience")
READ_BATCH = 20_000
APPLY_CHUNK = 250
"""Updates a poll decodes and applies per step (one orjson parse, one id lookup of this many;
the GIL is offered to readers between steps)."""
MAX_SKIP_S = 0.5
"""A poll skipped because this process is applying its own batch runs anyway after this."""
FREEZE_EVERY = 20_000
"""Updates applied between two ``gc.freeze`` calls (``LiveFollower._settle_gc``)."""
PUBLISH_S = 0.1
"""While a poll applies a long read, a new handle for readers this often (and at its end). A
new view costs the first sizing on it the delta patches of its clauses, uncached (≈ 10-20 ms
for the bench's 5-clause rule at 10M users): publishing more often makes updates visible sooner
and more sizings pay that."""


def updates_through(snapshot: AnySnapshot) -> int:
    """The last log sequence number a snapshot version already contains."""
    return int(snapshot.manifest.get(THROUGH) or 0)


def decode(row: LoggedUpdate) -> Update:
    """A log row back into an ``Update`` (set values that were lists become frozensets)."""
    body: dict[str, Any] = orjson.loads(row.body)
    values = {
        k: frozenset(v) if isinstance(v, list) else v for k, v in (body.get("s") or {}).items()
    }
    return Update(
        seq=row.seq,
        user_id=row.user_id,
        set=values,
        unset=tuple(body.get("u") or ()),
        delete=bool(body.get("d")),
    )


def decode_all(rows: list[LoggedUpdate]) -> list[Update]:
    """``decode`` of many rows, their bodies parsed by one ``orjson.loads`` of a JSON array
    (a reader applying another process's batch spent most of its time per-row parsing)."""
    if not rows:
        return []
    bodies: list[dict[str, Any]] = orjson.loads("[" + ",".join(r.body for r in rows) + "]")
    out: list[Update] = []
    for row, body in zip(rows, bodies, strict=True):
        got = body.get("s")
        values = {k: frozenset(v) if type(v) is list else v for k, v in got.items()} if got else {}
        out.append(
            Update(row.seq, row.user_id, values, tuple(body.get("u") or ()), bool(body.get("d")))
        )
    return out


def encode(update: Mapping[str, Any]) -> str:
    """The log body of a validated update (``decode`` reverses it)."""
    out: dict[str, Any] = {}
    if update.get("delete"):
        out["d"] = True
    if update.get("set"):
        out["s"] = {
            k: sorted(v) if isinstance(v, frozenset | set | list | tuple) else v
            for k, v in update["set"].items()
        }
    if update.get("unset"):
        out["u"] = list(update["unset"])
    return orjson.dumps(out).decode()


class LiveFollower:
    """One process's delta over the current base, kept up to date from the log.

    Args:
        log: the update log.
        poll_s: how often the background thread reads updates other processes logged.
    """

    def __init__(self, log: UpdateLog, *, poll_s: float = 0.1) -> None:
        self.log = log
        self.poll_s = poll_s
        self._lock = threading.RLock()
        self._delta: Delta | ShardedDelta | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.on_change: list[Callable[[], None]] = []
        """Hooks run after new updates were applied (caches keyed by snapshot version)."""
        self.compactor: Callable[[], None] | None = None
        """Started in a thread once ``compact_after`` updates are pending (``stores``)."""
        self.compact_after = 500_000
        self.dedup_seconds = 7 * 86_400.0
        """How long a compacted update stays in the log (its ``update_id`` a duplicate)."""
        self._compacting: threading.Thread | None = None
        self._results: tuple[DeltaView, ResultCache] | None = None
        self._shard_results = ShardResults()
        self._local = 0
        """Batches this process is logging and applying right now (``local_batch``)."""
        self._local_lock = threading.Lock()
        self._skipped_since: float | None = None
        self._frozen_at = 0
        """``delta.applied`` at the last ``gc.freeze`` (``_settle_gc``)."""
        self._handle: tuple[AnySnapshot, AnySnapshot] | None = None
        """``(base, live handle)`` readers take without the lock (replaced whole, never
        changed in place)."""

    # -- reading ------------------------------------------------------------------------

    def live(self, base: AnySnapshot) -> AnySnapshot:
        """``base`` with every logged update after its ``updates_through`` applied (a sharded
        base: each update in its user's shard).

        Lock-free when the handle of ``base`` is published already: a sizing never waits for
        a writer applying a batch (the applier publishes a new handle when it is done, and a
        reader takes whichever handle is current, one consistent view each)."""
        handle = self._handle
        if handle is not None and handle[0] is base:
            return handle[1]
        with self._lock:
            delta = self._delta
            if delta is None or delta.base is not base:
                if delta is None or delta.base.path != base.path:
                    delta = new_delta(base)
                    self._delta = delta
                    self._handle = None
                    self._catch_up_locked()
                else:  # the same version reopened: keep the delta, move it to the new handle
                    delta.base = base
            self._ensure_thread()
            return self._publish_locked()

    def _publish_locked(self) -> AnySnapshot:
        """A new handle over the delta as applied now, made current for readers."""
        delta = self._delta
        assert delta is not None
        base = delta.base
        if isinstance(delta, ShardedDelta):
            assert isinstance(base, ShardedSnapshot)
            sview = delta.view()
            made: AnySnapshot = LiveShardedSnapshot(
                base, delta, sview, self._shard_results.for_view(sview)
            )
        else:
            assert isinstance(base, Snapshot)
            view = delta.view()
            kept = self._results
            if kept is None or kept[1].stamp is None or kept[0].number > view.number:
                kept = self._results = (view, ResultCache(stamp=view.number))
            elif kept[0] is not view:  # updates applied: answers changed (carried over)
                kept = self._results = (view, carry_results(base, delta, kept, view))
            made = LiveSnapshot(base, delta, view, kept[1])
        self._handle = (base, made)
        return made

    def frozen_state(self) -> tuple[int, dict[int, UserState], list[str]]:
        """``(seq, users, new ids)`` as of one moment (what a compaction folds in)."""
        seq, parts = self.frozen_parts()
        if len(parts) != 1:
            raise TypeError("frozen_state of a sharded delta: use frozen_parts")
        return seq, parts[0][0], parts[0][1]

    def frozen_parts(self) -> tuple[int, list[tuple[dict[int, UserState], list[str]]]]:
        """``(seq, [(users, new ids) per shard])`` as of one moment (one part unsharded)."""
        with self._lock:
            delta = self._delta
            if delta is None:
                return 0, [({}, [])]
            parts = delta.parts if isinstance(delta, ShardedDelta) else [delta]
            return delta.seq, [(dict(p.users), list(p.new_list)) for p in parts]

    @property
    def delta(self) -> Delta | ShardedDelta | None:
        """The current delta (``None`` before the first ``live`` call)."""
        return self._delta

    # -- applying -----------------------------------------------------------------------

    @contextlib.contextmanager
    def local_batch(self) -> Iterator[None]:
        """Around logging and applying a batch here: meanwhile the poll thread does not read
        that batch back from the log only to find it applied (that read and parse was a tenth
        of a serving process taking updates, profiled). Others' updates still arrive: a
        local batch that does not follow on ``seq`` catches up first, and a poll skipped for
        ``MAX_SKIP_S`` runs anyway."""
        with self._local_lock:
            self._local += 1
        try:
            yield
        finally:
            with self._local_lock:
                self._local -= 1

    def applied_locally(self, updates: list[Update]) -> None:
        """Updates this process just logged: apply them now (in order, or catch up first)."""
        with self._lock:
            delta = self._delta
            if delta is None or not updates:
                return
            if updates[0].seq == delta.seq + 1:
                delta.apply(updates)
                self._publish_locked()
                self._changed()
            else:
                self._catch_up_locked()
            self._settle_gc(delta)

    def catch_up(self) -> int:
        """Apply what other processes logged; returns how many updates were applied."""
        with self._lock:
            return self._catch_up_locked()

    def _catch_up_locked(self) -> int:
        delta = self._delta
        if delta is None:
            return 0
        total = 0
        with gc_paused():  # as in ``_poll_rows``
            while not self._stop.is_set():
                rows = self._read(delta.seq)
                if not rows:
                    break
                for start in range(0, len(rows), APPLY_CHUNK):
                    delta.apply(decode_all(rows[start : start + APPLY_CHUNK]))
                total += len(rows)
                if len(rows) < READ_BATCH:
                    break
        if total:
            self._publish_locked()
            self._changed()
        return total

    def _read(self, seq: int) -> list[LoggedUpdate]:
        try:
            return self.log.read_after(seq, READ_BATCH)
        except Exception as exc:  # the log's database is down: serve what we have
            log.warning("cannot read the profile update log: %s", exc)
            return []

    def _poll_once(self) -> None:
        """Read new log rows and apply them in chunks, publishing a new handle every
        ``PUBLISH_S`` and at the end; readers never wait (``live`` takes the published
        handle), and every C call (JSON parse, id lookup) is one chunk long, so none holds
        the GIL long enough to show in a sizing's p99. Whatever a local apply got to first
        is skipped by ``seq``."""
        delta = self._delta
        if delta is None:
            return
        if self._local:
            now = time.monotonic()
            if self._skipped_since is None:
                self._skipped_since = now
            if now - self._skipped_since < MAX_SKIP_S:
                return
        self._skipped_since = None
        with gc_paused():  # the read, parse and apply of a poll allocate per row (see below)
            self._poll_rows(delta)
        self._settle_gc(delta)

    def _poll_rows(self, delta: Delta | ShardedDelta) -> None:
        """``_poll_once``'s loop, with the collector paused: rows, parsed bodies and updates
        are a few small containers per update, and with the collector on their allocation
        set off collections that walked the delta's whole per-user state (a reader following
        another process spent over half its time so, profiled at 10M users)."""
        published = time.monotonic()
        pending = False
        while not self._stop.is_set():
            rows = self._read(delta.seq)
            for start in range(0, len(rows), APPLY_CHUNK):
                if start:
                    time.sleep(0)  # let a waiting reader thread have the GIL between chunks
                updates = decode_all(rows[start : start + APPLY_CHUNK])
                with self._lock:
                    if self._delta is not delta:
                        return
                    todo = [u for u in updates if u.seq > delta.seq]
                    if not todo:
                        continue
                    if todo[0].seq > delta.seq + 1:  # a gap: something moved, read again
                        self._catch_up_locked()
                        return
                    delta.apply(todo)
                    pending = True
                    if time.monotonic() - published >= PUBLISH_S:
                        self._publish_locked()
                        self._changed()
                        published, pending = time.monotonic(), False
            if len(rows) < READ_BATCH:
                break
        if pending:
            with self._lock:
                if self._delta is delta:
                    self._publish_locked()
                    self._changed()

    def _settle_gc(self, delta: Delta | ShardedDelta) -> None:
        """Move what exists now to the collector's permanent generation once the delta grew
        by ``FREEZE_EVERY`` updates: the delta's per-user state lives until the next
        compaction, and full collections walking it stalled sizings (tens of ms at 1M touched
        users). Frozen objects are still freed by reference counting (the state holds no
        cycles)."""
        if delta.applied - self._frozen_at >= FREEZE_EVERY or delta.applied < self._frozen_at:
            self._frozen_at = delta.applied
            gc.freeze()

    def _changed(self) -> None:
        delta = self._delta
        if (
            delta is not None
            and self.compactor is not None
            and delta.applied >= self.compact_after
            and (self._compacting is None or not self._compacting.is_alive())
        ):
            self._compacting = threading.Thread(
                target=self.compactor, name="adtarget-compaction", daemon=True
            )
            self._compacting.start()
        for hook in list(self.on_change):
            try:
                hook()
            except Exception as exc:  # noqa: BLE001 - a cache hook must not stop updates
                log.warning("update hook failed: %s", exc)

    # -- polling ------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name="adtarget-updates", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._poll_once()

    def stop(self) -> None:
        """Stop the poll thread (tests, shutdown)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


def new_delta(base: AnySnapshot) -> Delta | ShardedDelta:
    """An empty delta over ``base`` at its ``updates_through`` (one per shard when sharded)."""
    if isinstance(base, ShardedSnapshot):
        return ShardedDelta(base, updates_through(base))
    return Delta(base, updates_through(base))


_followers: dict[tuple[str, str], LiveFollower] = {}
_logs: dict[str, UpdateLog] = {}
_registry_lock = threading.Lock()


def log_for(url: str) -> UpdateLog:
    """The process's one ``UpdateLog`` per URL (one connection pool each)."""
    with _registry_lock:
        got = _logs.get(url)
        if got is None:
            got = _logs[url] = UpdateLog(url)
        return got


@lru_cache(maxsize=64)
def _resolved(root: str) -> str:
    """``root`` made absolute once (every ``store.current()`` asks: no realpath per request)."""
    return str(Path(root).resolve())


def follower_for(root: Path, url: str, *, poll_s: float = 0.1) -> LiveFollower:
    """The process's one follower per (snapshot dir, log): every store of that data dir
    shares it, so an update applied through one store is seen through all of them."""
    key = (_resolved(str(root)), url)
    with _registry_lock:
        got = _followers.get(key)
    if got is None:
        made = LiveFollower(log_for(url), poll_s=poll_s)
        with _registry_lock:
            got = _followers.setdefault(key, made)
    return got


def forget_followers(items: Iterable[LiveFollower] | None = None) -> None:
    """Stop and drop followers (tests; a process that is shutting down)."""
    with _registry_lock:
        doomed = list(_followers.items())
        for key, follower in doomed:
            if items is None or follower in items:
                follower.stop()
                del _followers[key]


__all__ = [
    "LiveFollower",
    "LiveSnapshot",
    "decode",
    "decode_all",
    "encode",
    "follower_for",
    "forget_followers",
    "log_for",
    "new_delta",
    "updates_through",
]
