"""A published snapshot made of N shards: one manifest naming N ordinary snapshot directories.

Why shards are plain snapshots inside one version directory: every shard is opened by the same
``Snapshot`` reader (same files, same bitmaps, same speed), and the version directory is still
published by one rename and one ``CURRENT`` switch, so readers never see shards of two versions,
and rollback and undo (which only repoint ``CURRENT``) work unchanged. A user lives in shard
``sharding.shard_of(user_id, N)``; audiences are answered per shard and added up by a fan-out
(``audience.fanout``: in process, or one Ray actor per shard).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from adtarget.audience.fanout import LocalFanout
from adtarget.audience.index import now_seconds
from adtarget.audience.layout import FORMAT, MANIFEST, file_checksum, registry_from_json
from adtarget.audience.sharding import shard_name, shard_of, shards_of
from adtarget.audience.snapshot import Snapshot
from adtarget.errors import InvalidValue, NotFound
from adtarget.rules.registry import DimensionSpec

if TYPE_CHECKING:
    from adtarget.audience.fanout import Fanout

__all__ = ["AnySnapshot", "ShardedSnapshot", "is_sharded_dir", "open_snapshot", "write_manifest"]


def is_sharded_dir(path: Path) -> bool:
    """Whether the version directory at ``path`` is a sharded snapshot (its manifest says so)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return bool(manifest.get("shards"))


class ShardedSnapshot:
    """Read side of a sharded version directory: the shards, opened lazily, and its manifest.

    Args:
        path: the ``vNNNNNN`` (or staged) directory holding ``manifest.json`` and the shards.
        fanout_factory: builds the object that answers audiences over the shards (in process
            by default; the Ray backend passes one that talks to shard actors).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = now_seconds,
        fanout_factory: Callable[[ShardedSnapshot], Fanout] | None = None,
    ) -> None:
        self.path = Path(path)
        try:
            self.manifest: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        except FileNotFoundError as exc:
            raise NotFound(f"no snapshot at {self.path}", field="version") from exc
        entries = self.manifest.get("shards") or []
        if not entries:
            raise InvalidValue(f"{self.path} is not a sharded snapshot", field="version")
        self.version: str = self.manifest.get("version") or self.path.name
        self.created_at: str = self.manifest["created_at"]
        self.num_users: int = int(self.manifest["num_users"])
        self.registry: dict[str, DimensionSpec] = registry_from_json(self.manifest["registry"])
        self.shard_entries: list[dict[str, Any]] = list(entries)
        self.num_shards = len(entries)
        self.num_ordinals: int = sum(int(e["num_ordinals"]) for e in entries)
        self._clock = clock
        self._shards: list[Snapshot | None] = [None] * self.num_shards
        self._fanout_factory = fanout_factory
        self._fanout: Fanout | None = None

    def __repr__(self) -> str:
        return f"ShardedSnapshot({self.version!r}, shards={self.num_shards})"

    def shard_path(self, k: int) -> Path:
        """Directory of shard ``k`` (on shared storage when a cluster serves it)."""
        return self.path / str(self.shard_entries[k]["name"])

    def shard(self, k: int) -> Snapshot:
        """Shard ``k`` opened in this process (memory-mapped, so opening costs milliseconds)."""
        snap = self._shards[k]
        if snap is None:
            snap = self._shards[k] = Snapshot(self.shard_path(k), clock=self._clock)
        return snap

    @property
    def shards(self) -> list[Snapshot]:
        """Every shard, opened in this process."""
        return [self.shard(k) for k in range(self.num_shards)]

    @property
    def fanout(self) -> Fanout:
        """What answers sizes, overlaps and exports over the shards (created on first use)."""
        if self._fanout is None:
            if self._fanout_factory is None:
                self._fanout = LocalFanout(self)
            else:
                self._fanout = self._fanout_factory(self)
        return self._fanout

    # -- what callers of Snapshot also use --------------------------------------------------

    def shard_for(self, user_id: str) -> int:
        """The shard that holds ``user_id`` (``sharding.shard_of``)."""
        return shard_of(user_id, self.num_shards)

    def features_of(self, user_id: str) -> dict[str, Any] | None:
        """A user's features, read from the user's own shard in this process (decision path)."""
        return self.shard(self.shard_for(user_id)).features_of(user_id)

    def features_many(self, user_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """``features_of`` of each user: the ids hashed to their shards at once, each shard's
        users read in one batch (``Snapshot.features_many``; a live shard's too)."""
        ids = list(user_ids)
        if not ids:
            return []
        by_shard: dict[int, list[int]] = {}
        for i, k in enumerate(
            shards_of(pa.array(ids, pa.large_string()), self.num_shards).tolist()
        ):
            by_shard.setdefault(k, []).append(i)
        out: list[dict[str, Any] | None] = [None] * len(ids)
        for k, positions in by_shard.items():
            rows = self.shard(k).features_many([ids[i] for i in positions])
            for i, row in zip(positions, rows, strict=True):
                out[i] = row
        return out

    def segment_names(self) -> list[str]:
        """Segments materialized in the shards (every shard holds the same names)."""
        return sorted(self.manifest.get("segments", {}))

    def segment_info(self) -> dict[str, dict[str, Any]]:
        """Per segment: kind, rule text and current size (summed over the shards)."""
        out: dict[str, dict[str, Any]] = {}
        for snap in self.shards:
            for name, info in snap.segment_info().items():
                if name in out:
                    out[name]["size"] += info["size"]
                else:
                    out[name] = dict(info)
        return out


AnySnapshot = Snapshot | ShardedSnapshot
"""What a snapshot store hands out: one directory, or a manifest of shards."""


def open_snapshot(
    path: Path | str,
    *,
    fanout_factory: Callable[[ShardedSnapshot], Fanout] | None = None,
) -> AnySnapshot:
    """Open a version directory, sharded or not."""
    p = Path(path)
    if is_sharded_dir(p):
        return ShardedSnapshot(p, fanout_factory=fanout_factory)
    return Snapshot(p)


def write_manifest(
    staged: Path,
    *,
    shard_dirs: Sequence[Path],
    mode: str,
    base_version: str | None,
    now: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the top manifest of a staged sharded version, after every shard is complete.

    Each entry names the shard's directory, its user count and the checksum of its own manifest
    (which holds the checksums of its files): the shard's version identity. Written last, so a
    staged directory without it is never published (``SnapshotStore.publish`` refuses it).
    """
    entries: list[dict[str, Any]] = []
    registry: list[dict[str, Any]] | None = None
    segments: dict[str, dict[str, Any]] = {}
    total = 0
    for k, shard_dir in enumerate(shard_dirs):
        if shard_dir.parent != staged or shard_dir.name != shard_name(k):
            raise InvalidValue(f"shard {k} is not at {staged / shard_name(k)}", field="shard")
        m = json.loads((shard_dir / MANIFEST).read_text())
        total += int(m["num_users"])
        registry = m["registry"] if registry is None else registry
        for name, meta in m.get("segments", {}).items():
            seg = segments.setdefault(name, {"kind": meta.get("kind", "list"), "size": 0})
            seg["size"] += sum(int(g.get("size", 0)) for g in meta.get("groups", []))
        entries.append(
            {
                "name": shard_dir.name,
                "num_users": int(m["num_users"]),
                "num_ordinals": int(m["num_ordinals"]),
                "manifest": file_checksum(shard_dir / MANIFEST),
            }
        )
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": None,
        "created_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
        "mode": mode,
        "base_version": base_version,
        "num_users": total,
        "num_shards": len(entries),
        "shards": entries,
        "registry": registry or [],
        "segments": segments,
        **(extra or {}),
    }
    tmp = staged / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False))
    tmp.replace(staged / MANIFEST)
    return manifest
