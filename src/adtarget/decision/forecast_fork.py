"""Run a forecast's replay parts in forked child processes and collect their answers.

Why fork, and not a pool: a part needs the live index, the profiles, the replayed rows and the
memoized index matches, hundreds of megabytes that a fork shares copy-on-write at no cost and a
pool would have to pickle per forecast (or keep per catalog version). Why processes at all:
users no budget ties are independent, so their replays run on every core at once; and while
children replay, the asking process waits in ``os.read`` without the GIL, so the decisions a
serving worker answers meanwhile are not held up for the seconds a replay takes.

A child runs only pure-Python replay code on objects it inherited (no Arrow, no threads, no
store connections), with the garbage collector off (a collection would walk, and so copy, the
whole inherited heap), writes its pickled answer to a pipe and leaves with ``os._exit``. Its
progress (rows done) goes to a shared anonymous ``mmap`` the parent reads while it waits. Any
failure of a child (an exception, a kill, an empty pipe, no progress for ``STALL_S``) makes
``run_forked`` return ``None``: the caller then replays in process, so a forecast never fails
(nor hangs) because a fork did.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import pickle
import selectors
import signal
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

Task = Callable[[Callable[..., None]], Any]
"""A part of the replay: called in the child with ``done(rows[, total])`` to report progress."""
POLL_S = 0.2
"""How often the parent reports the children's progress while it waits."""
STALL_S = 300.0
"""A child that reports no progress (``done``) and sends nothing for this long is taken for
hung — a lock another thread of the parent held at the fork, say — and killed: the caller
then works in process. Every part reports at least every ``PROGRESS_EVERY`` rows or users."""
SLOT = struct.Struct("qqq")
"""A child's progress in the shared memory: rows done, rows in all, calls of ``done``."""


def cores() -> int:
    """The cores this process may run on (its affinity where the platform says)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def can_fork() -> bool:
    """Whether this platform forks (not on Windows: the caller replays in process)."""
    return hasattr(os, "fork")


def run_forked(
    tasks: Sequence[Task],
    progress: Callable[[int], None] | None = None,
    totals: Callable[[int, int], None] | None = None,
) -> list[Any] | None:
    """Each task's return value, in order, each computed in its own forked child; ``None``
    if any child failed (the caller replays in process).

    ``progress(rows)``: the children's rows done so far, summed, every ``POLL_S``;
    ``totals(rows, of)``: the same with the rows the children said they have in all (a child
    that finds its own work reports ``done(rows, total)``)."""
    shared = mmap.mmap(-1, SLOT.size * max(1, len(tasks)))
    children: list[tuple[int, int]] = []
    answers: list[Any] | None = None
    try:
        for slot, task in enumerate(tasks):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                os.close(r)
                _child(task, w, shared, slot)
            os.close(w)
            children.append((pid, r))
        answers = _collect(children, shared, progress, totals)
        return answers
    finally:
        for _, r in children:
            _close(r)
        _reap([pid for pid, _ in children], wait=answers is None)
        shared.close()


def _child(task: Task, w: int, shared: mmap.mmap, slot: int) -> None:
    gc.disable()
    code = 0
    try:
        beats = 0

        def done(rows: int, total: int = 0) -> None:
            nonlocal beats
            beats += 1
            SLOT.pack_into(shared, SLOT.size * slot, rows, total, beats)

        out = pickle.dumps((True, task(done)), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # noqa: BLE001  (reported to the parent, which replays itself)
        out = pickle.dumps((False, repr(exc)))
        code = 1
    try:
        view = memoryview(out)
        while view:
            view = view[os.write(w, view) :]
        os.close(w)  # the parent's end of file now, not after this process is torn down
    finally:
        os._exit(code)


def _collect(
    children: list[tuple[int, int]],
    shared: mmap.mmap,
    progress: Callable[[int], None] | None,
    totals: Callable[[int, int], None] | None = None,
) -> list[Any] | None:
    """Read every child's pipe to its end (all at once: a child blocks on a full pipe); kill
    them all and answer ``None`` when one has neither reported nor sent anything for
    ``STALL_S``."""
    chunks: dict[int, list[bytes]] = {r: [] for _, r in children}
    slot_of = {r: i for i, (_, r) in enumerate(children)}
    seen = [SLOT.unpack_from(shared, SLOT.size * i) for i in range(len(children))]
    heard = dict.fromkeys(chunks, time.monotonic())
    with selectors.DefaultSelector() as waiting:  # epoll: a server's fds pass select()'s 1024
        for r in chunks:
            waiting.register(r, selectors.EVENT_READ)
        while waiting.get_map():
            ready = waiting.select(POLL_S)
            now = time.monotonic()
            for key, _ in ready:
                heard[key.fd] = now
                data = os.read(key.fd, 1 << 20)
                if data:
                    chunks[key.fd].append(data)
                else:
                    waiting.unregister(key.fd)
            slots = [SLOT.unpack_from(shared, SLOT.size * i) for i in range(len(children))]
            running = waiting.get_map()
            for r in chunks:
                if r not in running:
                    continue
                if slots[slot_of[r]] != seen[slot_of[r]]:
                    heard[r] = now
                elif now - heard[r] > STALL_S:  # hung: every child goes, the caller works
                    for pid, _ in children:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    return None
            seen = slots
            if progress is not None:
                progress(sum(done for done, _, _ in slots))
            if totals is not None:
                totals(sum(done for done, _, _ in slots), sum(of for _, of, _ in slots))
    out = []
    for _, r in children:
        data = b"".join(chunks[r])
        if not data:
            return None  # killed before it answered
        ok, value = pickle.loads(data)
        if not ok:
            return None
        out.append(value)
    return out


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):  # already closed
        os.close(fd)


def _reap(pids: Sequence[int], wait: bool) -> None:
    """Reap the children: at once when ``wait`` (a failure: they were killed), else the
    ones still exiting in a background thread. Why: a child that has sent its answer spends
    another 50 ms or so unmapping the address space it inherited, and the forecast need not
    wait for that."""
    left = [pid for pid in pids if not _exited(pid, block=wait)]
    if left:
        threading.Thread(
            target=_reap_all, args=(left,), name="forecast-reaper", daemon=True
        ).start()


def _exited(pid: int, block: bool) -> bool:
    """Whether the child ``pid`` is reaped (``block``: wait for it)."""
    try:
        return os.waitpid(pid, 0 if block else os.WNOHANG)[0] != 0
    except ChildProcessError:  # already reaped
        return True


def _reap_all(pids: Sequence[int]) -> None:
    for pid in pids:
        _exited(pid, block=True)
