"""A persisted command defined outside ``adtarget.commands``, like the ingest module's publish.

It records a segment's size (``segments.last_size``): enough state to prove the extension point
(rebuild from payload in another process, default redo, conflict-free undo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from sqlalchemy import select, update

from adtarget.catalog.tables import Segment
from adtarget.commands.persisted import CommandContext, PersistedCommandBase, register_command


@register_command
@dataclass
class SetSegmentSize(PersistedCommandBase):
    """Set ``last_size`` of one segment; undo puts the previous value back."""

    kind: ClassVar[str] = "test.segment_size"
    segment_id: int
    size: int
    previous: int | None = None

    @property
    def description(self) -> str:
        return f"set size of segment {self.segment_id} to {self.size}"

    def execute(self, ctx: CommandContext) -> dict[str, Any]:
        self.previous = ctx.session.scalar(
            select(Segment.last_size).where(Segment.id == self.segment_id)
        )
        self._set(ctx, self.size)
        return {"segment_id": self.segment_id, "last_size": self.size, "actor": ctx.actor}

    def undo(self, ctx: CommandContext) -> dict[str, Any]:
        self._set(ctx, self.previous)
        return {"segment_id": self.segment_id, "last_size": self.previous}

    def _set(self, ctx: CommandContext, value: int | None) -> None:
        ctx.session.execute(
            update(Segment).where(Segment.id == self.segment_id).values(last_size=value)
        )

    def to_payload(self) -> dict[str, Any]:
        return {"segment_id": self.segment_id, "size": self.size, "previous": self.previous}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        return cls(**payload)
