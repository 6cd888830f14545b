"""A write-ahead file for events answered before they reach the event log.

Why: the event log's append (dedup index, Parquet part, rollups, sometimes a compaction) costs
~8 ms per batch whatever its size, and half a second when it compacts; a beacon's answer must
not wait for it. One ``write`` + ``fdatasync`` of NDJSON lines to a local file costs far less,
so the intake answers once its rows are here and moves them to the event log in the background.

Layout under ``root``: ``<pid>-<random>-<seq>.wal`` segments, each held under an exclusive
``flock`` by the process writing it for as long as it lives. The writer appends to its current
segment; the flusher ``seal``s it (new rows go to a new one), stores its rows in the event log
and ``release``s it (unlink). A segment nobody holds the lock of belongs to a dead process
(crash, ``kill -9``): ``orphans`` hands it to whoever locks it first, for replay into the log.

Exactly once: a row is in a segment before its answer, and a segment is unlinked only after the
event log committed its rows, so nothing answered is lost; a crash between that commit and the
unlink replays rows the log has seen, and the log drops them by ``event_id`` (its dedup window,
``ADTARGET_EVENTS_DEDUP_HOURS``, so a segment must be replayed within it: at the next start).
A segment is created as ``.tmp`` and renamed only once locked, so no scanner can take a live
writer's new segment for an orphan.

Bounded: while the event log is down nothing is released, so the file (and the rows the mover
keeps in memory) would grow without end. ``max_bytes`` caps what one process holds unreleased;
past it ``append`` raises ``BacklogFull`` and the beacon is answered 503 (the player retries, and
a retry counts once) instead of filling the disk or memory.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from adtarget.process import fsync_dir

log = logging.getLogger("adtarget.delivery")
SUFFIX = ".wal"


class BacklogFull(Exception):
    """More than ``max_bytes`` of rows wait for the event log: refuse new ones for now."""


@dataclass
class Segment:
    """One locked segment file and the rows it holds (in memory: the flusher never re-reads)."""

    path: Path
    fd: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0  # bytes written (counted against ``max_bytes`` until released)


class WriteAheadLog:
    """One process's segments under ``root``; ``append`` is thread-safe."""

    def __init__(self, root: Path, *, sync: bool = True, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.held = 0  # bytes in segments written or adopted here and not yet released
        self.root.mkdir(parents=True, exist_ok=True)
        self._sync = sync
        self._lock = threading.Lock()
        self._current: Segment | None = None
        self._prefix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._own: set[Path] = set()
        self._broken: list[Segment] = []  # segments a write failed in (see ``append``)

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` as one NDJSON chunk and fsync it: durable when this returns."""
        data = b"".join([orjson.dumps(row) + b"\n" for row in rows])
        with self._lock:
            if self.max_bytes is not None and self.held + len(data) > self.max_bytes:
                raise BacklogFull(
                    f"{self.held:,} bytes of events wait for the event log "
                    f"(limit {self.max_bytes:,})"
                )
            seg = self._current or self._open()
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(seg.fd, view) :]
                if self._sync:
                    os.fdatasync(seg.fd)
            except OSError:
                # Disk full, I/O error: the file may now end in part of this batch, and after a
                # failed fsync its state is unknown. Write nothing more after it: the next rows
                # go to a new segment, this one is sealed with the rows it surely holds.
                self._current = None
                self._broken.append(seg)
                raise
            finally:
                written = os.lseek(seg.fd, 0, os.SEEK_END) - seg.size
                seg.size += written
                self.held += written
            seg.rows.extend(rows)

    def pending(self) -> int:
        """Rows in the current (unsealed) segment."""
        seg = self._current
        return len(seg.rows) if seg is not None else 0

    def seal(self) -> list[Segment]:
        """Take the current segment (and any a write failed in); new rows open the next."""
        with self._lock:
            sealed, self._broken = self._broken, []
            seg = self._current
            if seg is not None and seg.rows:
                self._current = None
                sealed.append(seg)
            return sealed

    def release(self, seg: Segment) -> None:
        """The segment's rows are in the event log: delete it, then drop its lock."""
        seg.path.unlink(missing_ok=True)
        os.close(seg.fd)
        self._own.discard(seg.path)
        with self._lock:
            self.held -= seg.size

    def abandon(self, seg: Segment) -> None:
        """Drop the lock but keep the file: its rows are replayed by the next to find it."""
        os.close(seg.fd)
        self._own.discard(seg.path)
        with self._lock:
            self.held -= seg.size

    def close(self) -> None:
        """Release an empty current segment (a non-empty one stays for the next start)."""
        with self._lock:
            seg, self._current = self._current, None
        if seg is not None:
            (self.abandon if seg.rows else self.release)(seg)

    def orphans(self) -> Iterator[Segment]:
        """Segments no live process holds, locked, with their rows (see the module docstring).

        A ``.tmp`` left by a process that died while creating a segment holds no rows (rows are
        written after the rename); one older than a minute is deleted.
        """
        for path in sorted(self.root.iterdir()):
            if path.name.endswith(".tmp"):
                _drop_stale_tmp(path)
                continue
            if path in self._own or not path.name.endswith(SUFFIX):
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:  # released by its owner meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is alive and holds it
                os.close(fd)
                continue
            if os.fstat(fd).st_nlink == 0:  # released between our open and our lock
                os.close(fd)
                continue
            size = os.fstat(fd).st_size
            with self._lock:
                self.held += size
            yield Segment(path, fd, _read_rows(path, fd), size)

    def _open(self) -> Segment:
        self._seq += 1
        final = self.root / f"{self._prefix}-{self._seq:08d}{SUFFIX}"
        tmp = final.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(tmp, final)
        if self._sync:
            fsync_dir(self.root)
        self._own.add(final)
        self._current = Segment(final, fd)
        return self._current


def _drop_stale_tmp(path: Path) -> None:
    try:
        if time.time() - path.stat().st_mtime > 60:
            path.unlink(missing_ok=True)
    except FileNotFoundError:
        pass


def _read_rows(path: Path, fd: int) -> list[dict[str, Any]]:
    """The rows of a dead process's segment. A last line without its newline was being written
    when it died, so never answered: dropped. A bad line elsewhere is logged and skipped."""
    with os.fdopen(os.dup(fd), "rb") as fh:
        fh.seek(0)
        data = fh.read()
    lines = data.split(b"\n")
    if lines and lines[-1]:
        log.warning(
            "%s: dropping a torn last line (%d bytes, never answered)", path, len(lines[-1])
        )
    rows = []
    for number, line in enumerate(lines[:-1], 1):
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            log.error("%s line %d: not JSON, skipped: %r", path, number, line[:200])
    return rows
