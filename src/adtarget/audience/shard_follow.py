"""Some shards of one sharded version kept current from the profile update log.

Why its own follower (not ``live.LiveFollower``): a Ray shard host holds only its own shards,
so it keeps a delta for those alone and skips the log's other updates (a full
``ShardedDelta`` in every host would apply every update in every host). The rest is the
follower's: the log read after the last applied sequence number, ``live.decode_all``, one
``Delta`` per shard, a frozen view per answer. A caller passes the sequence number it has seen
(``ensure``), so an answer never leaves out an update the asking process already accepted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from adtarget.audience.delta import Delta, DeltaView
from adtarget.audience.gcpause import gc_paused
from adtarget.audience.live import APPLY_CHUNK, READ_BATCH, decode_all, updates_through
from adtarget.audience.live_snapshot import LiveSnapshot
from adtarget.audience.results import ResultCache
from adtarget.audience.sharded import ShardedSnapshot
from adtarget.audience.sharded_live import group_by_shard
from adtarget.audience.snapshot import Snapshot
from adtarget.audience.update_log import LoggedUpdate, UpdateLog
from adtarget.errors import ShardUnavailable

log = logging.getLogger("adtarget.audience")


class ShardFollower:
    """Shards ``shards`` of ``base``, each as its base plus the logged updates of its users.

    Args:
        base: the sharded version (its ``updates_through`` is where replay starts).
        shards: the shard numbers this follower serves.
        log: the profile update log every writer appends to.
        poll_s: how often ``start``'s thread reads new log rows.
    """

    def __init__(
        self, base: ShardedSnapshot, shards: Sequence[int], log: UpdateLog, *, poll_s: float = 0.1
    ) -> None:
        self.base = base
        self.log = log
        self.poll_s = poll_s
        self.seq = updates_through(base)
        self.parts = {k: Delta(base.shard(k), self.seq) for k in shards}
        self._lock = threading.Lock()
        self._kept: dict[int, tuple[DeltaView, Snapshot]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _apply_locked(self, rows: list[LoggedUpdate]) -> None:
        updates = [u for u in decode_all(rows) if u.seq > self.seq]
        if not updates:
            return
        if updates[0].seq > self.seq + 1:  # a gap: rows moved meanwhile; the next read fills it
            return
        groups = group_by_shard(updates, self.base.num_shards)
        with gc_paused():
            for k, delta in self.parts.items():
                if groups[k]:
                    delta.apply(groups[k])
        self.seq = updates[-1].seq

    def ensure(self, at_least: int) -> None:
        """Apply the log up to at least ``at_least`` (the asking process's sequence number);
        ``ShardUnavailable`` when the log cannot be read that far."""
        if self.seq >= at_least:
            return
        with self._lock:
            while self.seq < at_least:
                try:
                    rows = self.log.read_after(self.seq, READ_BATCH)
                except Exception as exc:  # the log's database is down
                    raise self._behind(at_least, exc) from None
                if not rows:
                    break
                before = self.seq
                self._apply_locked(rows)
                if self.seq == before:
                    break
        if self.seq < at_least:
            raise self._behind(at_least, None)

    def _behind(self, at_least: int, exc: BaseException | None) -> ShardUnavailable:
        k = min(self.parts)
        why = f" ({type(exc).__name__}: {exc})" if exc else ""
        return ShardUnavailable(
            f"shard {k} of snapshot {self.base.version} could not read the profile update log "
            f"up to update {at_least} (it has {self.seq}){why}; retry shortly",
            field="shard",
            shard=k,
        )

    def snapshots(self) -> list[Snapshot]:
        """Every shard as of now: the base shard itself while no update touched it, else a
        ``LiveSnapshot`` of its frozen view (the same object, with its kept results, until
        the next update of that shard)."""
        out: list[Snapshot] = []
        with self._lock:
            views = {k: d.view() for k, d in self.parts.items()}
        for k, view in views.items():
            if view.empty:
                out.append(self.base.shard(k))
                continue
            kept = self._kept.get(k)
            if kept is None or kept[0] is not view:
                snap = LiveSnapshot(self.base.shard(k), self.parts[k], view, ResultCache())
                kept = self._kept[k] = (view, snap)
            out.append(kept[1])
        return out

    def poll_once(self) -> None:
        """Read new rows without the lock, apply them under it in chunks (answers wait at
        most one chunk)."""
        try:
            rows = self.log.read_after(self.seq, READ_BATCH)
        except Exception as exc:  # noqa: BLE001 - keep serving what we have
            log.warning("cannot read the profile update log: %s", exc)
            return
        for start in range(0, len(rows), APPLY_CHUNK):
            with self._lock:
                self._apply_locked(rows[start : start + APPLY_CHUNK])

    def start(self) -> None:
        """Poll the log every ``poll_s`` in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="adtarget-shard-log", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll_once()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
