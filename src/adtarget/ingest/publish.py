"""Publishing an upload as an undoable command, and refreshing segment sizes after it.

Undo design (decided here, see docs): snapshot versions are immutable directories, so undo
*repoints* ``CURRENT`` to the version that was current before the upload
(``SnapshotStore.rollback``) and redo repoints to the upload's version. Nothing is rebuilt, so
undo is exact to the byte. The first-ever publish has no previous version; undoing it publishes
an empty snapshot (zero users), which sizes identically to "no snapshot". Both refuse with
``Conflict`` when another publish happened since (undo that first) or when the version they
need was pruned (``snapshots_keep``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Self

from sqlalchemy.orm import Session

from adtarget.audience.build import SnapshotBuilder
from adtarget.audience.store import SnapshotStore
from adtarget.audience.stores import snapshot_store_for
from adtarget.catalog import segments
from adtarget.catalog.coltypes import utcnow
from adtarget.catalog.dimensions import register_dimensions, remove_unused_dimensions
from adtarget.catalog.upload_jobs import find_job
from adtarget.commands.persisted import CommandContext, register_command
from adtarget.errors import Conflict, NotFound
from adtarget.rules.eval_bitmap import count
from adtarget.rules.parse import parse
from adtarget.rules.registry import DimensionSpec, DimensionType
from adtarget.settings import Settings, get_settings


def snapshot_store(settings: Settings) -> SnapshotStore:
    """The data dir's snapshot store (followed in Redis with Redis profiles)."""
    return snapshot_store_for(settings)


def refresh_segment_sizes(session: Session, store: SnapshotStore) -> dict[str, int]:
    """Write ``last_size``/``last_snapshot`` of every active segment from the current snapshot.

    List segments read their (unexpired) member bitmap; rule segments are counted with the
    bitmap evaluator when the snapshot did not materialize them. Returns name → size.
    """
    snap = store.current()
    if snap is None:
        return {}
    materialized = snap.segment_info()
    sizes: dict[str, int] = {}
    now = utcnow()
    for seg in segments.active_segments(session):
        size: int | None
        if seg.name in materialized:
            size = int(materialized[seg.name]["size"])
        elif seg.kind == "list":
            size = 0
        else:
            size = _count_rule(seg.rule or "", snap)
        if size is not None:
            sizes[seg.name] = size
    segments.record_sizes(session, sizes, snapshot=snap.version, at=now)
    session.flush()
    return sizes


def _count_rule(text: str, snap: Any) -> int | None:
    """Exact size of a rule segment, or None when the rule no longer validates."""
    try:
        return int(count(parse(text), snap.index))
    except Exception:  # noqa: BLE001 - a stale rule must not block a publish
        return None


def _updates_kept(store: SnapshotStore) -> dict[str, Any]:
    """How many real-time profile updates the restored version replays, said in the answer."""
    snap = store.current()
    n = int(getattr(getattr(snap, "delta", None), "applied", 0))
    return {
        "updates_replayed": n,
        "updates_note": (
            f"{n} profile update(s) not in the restored version were replayed on top of it"
            if n
            else "no profile updates to replay"
        ),
    }


def _store(ctx: CommandContext) -> SnapshotStore:
    return snapshot_store(ctx.settings or get_settings())


def publish_empty(store: SnapshotStore) -> str:
    """Publish a snapshot with no users (what "before the first upload" sizes like)."""

    builder = SnapshotBuilder(store=store, base=None, registry={}, mode="replace")
    return store.publish(builder.finish())


@register_command
@dataclass
class PublishUpload:
    """Make an upload's staged snapshot current; undo/redo repoint between the two versions."""

    kind: ClassVar[str] = "upload_publish"
    job_id: str
    previous: str | None
    staged: str | None = None
    snapshot: str | None = None
    undo_version: str | None = None
    segment: str | None = None
    ttl_seconds: int | None = None
    new_dimensions: list[dict[str, str]] = field(default_factory=list)
    created_dimensions: list[str] = field(default_factory=list)
    """Dimensions this upload registered (taken back on undo when unused)."""

    @property
    def description(self) -> str:
        """One line for the history."""
        what = f"segment {self.segment!r}" if self.segment else "audience"
        return f"publish upload {self.job_id[:8]} ({what}) as {self.snapshot or 'new snapshot'}"

    def execute(self, ctx: CommandContext) -> dict[str, Any]:
        """Publish the staged build, unless another publish moved ``CURRENT`` meanwhile."""
        store = _store(ctx)
        if self.snapshot is not None:  # executed before: this is a redo from the log
            return self.redo(ctx)
        current = store.current_version()
        if current != self.previous and self.previous not in store.lineage(current):
            raise Conflict(
                f"snapshot {current} was published while this upload was built on "
                f"{self.previous}; re-run the upload",
                field="snapshot",
            )
        self.created_dimensions = self._register(ctx.session, None)
        if self.segment:
            self._ensure_segment(ctx.session)
        if self.staged is None:
            raise NotFound("nothing staged to publish", field="staged")
        self.snapshot = store.publish(self.staged)
        self.staged = None
        return self._after(ctx, store, undone=False)

    def undo(self, ctx: CommandContext) -> dict[str, Any]:
        """Repoint to the version current before this upload (or an empty one)."""
        store = _store(ctx)
        current = store.current_version()
        if current != self.snapshot and self.snapshot not in store.lineage(current):
            raise Conflict(
                f"snapshot {current} is current, not {self.snapshot}: a later publish must be "
                "undone first",
                field="snapshot",
            )
        if self.previous is not None:
            self._repoint(store, self.previous)
        elif self.undo_version is not None and self.undo_version in store.versions():
            store.rollback(self.undo_version)
        else:
            self.undo_version = publish_empty(store)
        removed, kept = remove_unused_dimensions(ctx.session, self.created_dimensions)
        self.created_dimensions = removed  # what a redo registers again
        result = self._after(ctx, store, undone=True)
        result["dimensions_removed"], result["dimensions_kept"] = removed, kept
        result.update(_updates_kept(store))
        return result

    def redo(self, ctx: CommandContext) -> dict[str, Any]:
        """Repoint to this upload's version again."""
        store = _store(ctx)
        current = store.current_version()
        expected = self.previous if self.previous is not None else self.undo_version
        if current != expected and expected not in store.lineage(current):
            raise Conflict(
                f"snapshot {current} is current, not {expected}: something was published "
                "after the undo",
                field="snapshot",
            )
        assert self.snapshot is not None
        self._repoint(store, self.snapshot)
        self.created_dimensions = self._register(ctx.session, set(self.created_dimensions))
        return self._after(ctx, store, undone=False)

    def to_payload(self) -> dict[str, Any]:
        """Everything needed to undo/redo from another process."""
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        """Inverse of ``to_payload``."""
        return cls(**payload)

    # -- helpers ---------------------------------------------------------------------------

    def _register(self, session: Session, only: set[str] | None) -> list[str]:
        """Register this upload's new dimensions (``only`` these names); returns those created."""
        return register_dimensions(
            session,
            [
                DimensionSpec(d["name"], d["type"], description="registered by an upload")  # type: ignore[arg-type]
                for d in self.new_dimensions
                if d["type"] in ("category", "number", "set", "bool")
                and (only is None or d["name"] in only)
            ],
        )

    @staticmethod
    def _repoint(store: SnapshotStore, version: str) -> None:
        try:
            store.rollback(version)
        except NotFound:
            raise Conflict(
                f"snapshot {version} is no longer kept (snapshots_keep); cannot switch to it",
                field="snapshot",
            ) from None

    def _ensure_segment(self, session: Session) -> None:
        assert self.segment is not None
        segments.ensure_list_segment(session, self.segment, ttl_seconds=self.ttl_seconds)

    def _after(self, ctx: CommandContext, store: SnapshotStore, *, undone: bool) -> dict[str, Any]:
        sizes = refresh_segment_sizes(ctx.session, store)
        job = find_job(ctx.session, self.job_id)
        if job is not None:
            job.snapshot = self.snapshot
            job.previous_snapshot = self.previous
            job.report = {**(job.report or {}), "undone": undone}
        return {
            "job_id": self.job_id,
            "snapshot": store.current_version(),
            "upload_snapshot": self.snapshot,
            "previous": self.previous,
            "undone": undone,
            "segment_sizes": sizes,
        }


def dimension_payload(specs: list[DimensionSpec]) -> list[dict[str, str]]:
    """New dimensions as stored in the command payload."""
    return [{"name": s.name, "type": s.type} for s in specs]


_ = DimensionType  # re-exported type for callers building payloads
