"""Versioned snapshot directories, published by atomic rename, chosen by an atomic pointer file.

Why this shape: a reader must never see half a snapshot, a crashed build must leave the previous
version serving, and readers in other processes must pick up a new version without a restart.
Each version is an immutable directory ``vNNNNNN``; a build writes into ``.tmp-<pid>-<random>``
and ``publish`` renames it into place, then atomically replaces the ``CURRENT`` pointer file.
``current()`` costs one ``stat`` of that pointer, so it can be called on every request.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

from adtarget.audience.sharded import AnySnapshot, ShardedSnapshot, open_snapshot
from adtarget.audience.snapshot import MANIFEST
from adtarget.errors import Conflict, InvalidValue, NotFound
from adtarget.process import fsync_dir, pid_alive

if TYPE_CHECKING:
    from adtarget.audience.fanout import Fanout

CURRENT = "CURRENT"
UPDATES_THROUGH = "updates_through"
"""Manifest key: the last profile-update sequence number folded into a version."""
COMPACTED_FROM = "compacted_from"
"""Manifest key of a compaction's version: the version whose updates it folded in."""
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
VERSION_RE = re.compile(r"v(\d{6,})\Z")


class VersionEntry(TypedDict):
    """One published version as listed (``snapshots list``, ``GET /v1/audiences/snapshots``)."""

    version: str
    created_at: str | None
    num_users: int | None
    segments: list[str]
    current: bool
    shards: NotRequired[int]


def format_version(number: int) -> str:
    """``7`` -> ``"v000007"``."""
    return f"v{number:06d}"


log = logging.getLogger("adtarget.audience")


class SnapshotStore:
    """The snapshots of one data dir: list, open the current one, publish, roll back, prune.

    Args:
        root: directory holding ``vNNNNNN`` version directories and the ``CURRENT`` pointer.
        keep: how many versions to keep for rollback (the current one is never pruned).
        on_switch: called with the new current version after every publish and rollback,
            still under the store's lock, so followers (Redis profiles) see switches in order.
            Its failure is logged, not raised: the snapshot is already live.
        fanout_factory: how a sharded snapshot answers audiences (default: in process; the
            Ray backend passes one that calls shard actors).
    """

    def __init__(
        self,
        root: Path | str,
        keep: int = 5,
        *,
        on_switch: Callable[[str], None] | None = None,
        fanout_factory: Callable[[ShardedSnapshot], Fanout] | None = None,
    ) -> None:
        if keep < 1:
            raise InvalidValue("keep must be at least 1", field="keep")
        self.root = Path(root)
        self.keep = keep
        self.on_switch = on_switch
        self.fanout_factory = fanout_factory
        self.overlay: Callable[[AnySnapshot], AnySnapshot] | None = None
        """Set by ``stores.snapshot_store_for``: turns the base into the live audience (the
        base plus real-time profile updates, ``audience.live``, per shard when sharded);
        ``None`` serves the base."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._mutex = threading.Lock()
        self._pointer_key: tuple[int, int, int] | None = None
        self._current: AnySnapshot | None = None
        self._pointer_path = os.fspath(self.root / CURRENT)  # str: no Path join per request
        self.clean_stale()

    # -- reading ---------------------------------------------------------------------------

    def versions(self) -> list[str]:
        """Published versions, oldest first."""
        found = [p.name for p in self.root.iterdir() if VERSION_RE.match(p.name) and p.is_dir()]
        return sorted(found, key=lambda v: int(v[1:]))

    def current_version(self) -> str | None:
        """The version ``CURRENT`` points at, or ``None`` before the first publish."""
        try:
            text = (self.root / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def current(self) -> AnySnapshot | None:
        """The live snapshot: the base ``CURRENT`` points at, with the overlay applied."""
        snap = self.current_base()
        overlay = self.overlay
        if snap is None or overlay is None:
            return snap
        return overlay(snap)

    def current_base(self) -> AnySnapshot | None:
        """The snapshot ``CURRENT`` points at; reopened only when the pointer file changed.

        Builders (uploads, compaction) start from this one: its files are the base's own.
        """
        try:
            st = os.stat(self._pointer_path)
        except FileNotFoundError:
            return self._lost_pointer()
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._pointer_key and self._current is not None:
            return self._current
        with self._mutex:
            if key == self._pointer_key and self._current is not None:
                return self._current
            version = self.current_version()
            if version is None:
                return self._lost_pointer()
            if self._current is None or self._current.version != version:
                # a sharded snapshot's fan-out (Ray actors) goes when the last request using
                # the old snapshot drops it: actor handles are reference counted
                self._current = self._open(version)
            self._pointer_key = key
            return self._current

    def _open(self, version: str) -> AnySnapshot:
        return open_snapshot(self.root / version, fanout_factory=self.fanout_factory)

    def _lost_pointer(self) -> AnySnapshot | None:
        """``CURRENT`` vanished after this reader had a snapshot (directory wiped, storage lost).

        Why keep the held snapshot: its files are memory-mapped, so it still answers exactly as
        before; answering "no snapshot" instead would make every user unknown and let negative
        rules (``country != "CA"``) match users they exclude. A new publish resumes normally.
        """
        if self._current is not None:
            log.warning(
                "snapshot pointer %s is gone; still serving %s",
                self._pointer_path,
                self._current.version,
            )
        return self._current

    def open(self, version: str) -> AnySnapshot:
        """Open one published version (raises ``NotFound``)."""
        self._check_version(version)
        return self._open(version)

    def manifests(self) -> list[VersionEntry]:
        """The manifest of every published version, oldest first, with ``current`` marked."""
        current = self.current_version()
        out: list[VersionEntry] = []
        for version in self.versions():
            try:
                manifest = json.loads((self.root / version / MANIFEST).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            entry: VersionEntry = {
                "version": version,
                "created_at": manifest.get("created_at"),
                "num_users": manifest.get("num_users"),
                "segments": sorted(manifest.get("segments", {})),
                "current": version == current,
            }
            if manifest.get("shards"):
                entry["shards"] = len(manifest["shards"])
            out.append(entry)
        return out

    # -- writing ---------------------------------------------------------------------------

    def staging_dir(self) -> Path:
        """A fresh private directory for a build; ``publish`` moves it into place."""
        path = self.root / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path.mkdir()
        return path

    def publish(self, staged_dir: Path | str, *, expect: str | None = None) -> str:
        """Move a finished staged build into place as the next version and make it current.

        Args:
            staged_dir: the finished build.
            expect: publish only if this version is still current (``Conflict`` otherwise):
                a background compaction must not replace an upload published meanwhile.
        """
        staged = Path(staged_dir)
        if not (staged / MANIFEST).is_file():
            raise InvalidValue(f"{staged} is not a finished snapshot build", field="staged_dir")
        with self._locked():
            if expect is not None and self.current_version() != expect:
                raise Conflict(
                    f"snapshot {self.current_version()} is current, not {expect}",
                    field="snapshot",
                )
            existing = self.versions()
            number = int(existing[-1][1:]) + 1 if existing else 1
            while True:
                version = format_version(number)
                self._stamp_version(staged, version)
                try:
                    os.rename(staged, self.root / version)
                    break
                except OSError:
                    if not (self.root / version).exists():
                        raise
                    number += 1
            fsync_dir(self.root)
            self._point_to(version)
            self._prune()
            self._switched(version)
        return version

    def rollback(self, version: str) -> str:
        """Make an older (or newer) kept version current again; returns it."""
        with self._locked():
            self._check_version(version)
            self._point_to(version)
            self._switched(version)
        return version

    def clean_stale(self) -> list[str]:
        """Remove staging dirs whose building process is gone (a crash or SIGKILL mid-build)."""
        removed: list[str] = []
        for path in self.root.iterdir():
            if not path.name.startswith(TMP_PREFIX) or not path.is_dir():
                continue
            pid_text = path.name[len(TMP_PREFIX) :].split("-", 1)[0]
            pid = int(pid_text) if pid_text.isdigit() else -1
            if pid > 0 and pid != os.getpid() and pid_alive(pid):
                continue
            if pid == os.getpid():
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        for path in self.root.glob(f"{CURRENT}.*.tmp"):
            pid_text = path.name.split(".")[1]
            if pid_text.isdigit() and pid_alive(int(pid_text)):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return removed

    # -- internals -------------------------------------------------------------------------

    def _check_version(self, version: str) -> None:
        if not VERSION_RE.match(version) or not (self.root / version / MANIFEST).is_file():
            raise NotFound(f"snapshot version {version!r} does not exist", field="version")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _stamp_version(self, staged: Path, version: str) -> None:
        manifest = json.loads((staged / MANIFEST).read_text())
        manifest["version"] = version
        if manifest.get(UPDATES_THROUGH) is None:
            # a build that did not say which profile updates it holds holds its base's
            manifest[UPDATES_THROUGH] = self._through_of(manifest.get("base_version"))
        tmp = staged / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp, staged / MANIFEST)

    def _through_of(self, version: str | None) -> int:
        if not version:
            return 0
        try:
            manifest = json.loads((self.root / version / MANIFEST).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return 0
        return int(manifest.get(UPDATES_THROUGH) or 0)

    def lineage(self, version: str | None) -> list[str]:
        """``version`` and the versions it was compacted from, newest first.

        Why: a compaction folds profile updates into a new version without changing what the
        audience is, so undo and publish checks treat a compacted descendant as the same.
        """
        out: list[str] = []
        while version and version not in out:
            out.append(version)
            try:
                manifest = json.loads((self.root / version / MANIFEST).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                break
            version = manifest.get(COMPACTED_FROM)
        return out

    def _switched(self, version: str) -> None:
        if self.on_switch is None:
            return
        try:
            self.on_switch(version)
        except Exception as exc:  # the snapshot is live; a follower lagging must not undo that
            log.warning("snapshot %s is live, but following it failed: %s", version, exc)

    def _point_to(self, version: str) -> None:
        tmp = self.root / f"{CURRENT}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / CURRENT)
        fsync_dir(self.root)

    def _prune(self) -> None:
        current = self.current_version()
        versions = self.versions()
        doomed = versions[: max(0, len(versions) - self.keep)]
        for version in doomed:
            if version != current:
                shutil.rmtree(self.root / version, ignore_errors=True)
