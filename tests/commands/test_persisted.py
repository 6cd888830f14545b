"""The persisted-command extension point: registry, payload round trip, use through the writer."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from adtarget.catalog.tables import CommandLog, Segment
from adtarget.commands import persisted
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.commands.persisted import (
    MODULE_KEY,
    CommandContext,
    PersistedCommand,
    command_from_payload,
    register_command,
    registered_kinds,
    stored_payload,
)
from adtarget.commands.row_commands import Composite, CreateObject, UpdateObject
from adtarget.errors import InvalidValue, NotFound

from . import toy_command
from .conftest import Factory


def test_builtin_kinds_registered() -> None:
    kinds = registered_kinds()
    for kind in ("catalog.create", "catalog.update", "catalog.link_creative", "composite"):
        assert kind in kinds
    assert isinstance(toy_command.SetSegmentSize(1, 2), PersistedCommand)


def test_register_rejects_missing_or_taken_kind() -> None:
    class NoKind:
        pass

    with pytest.raises(InvalidValue, match="kind"):
        register_command(NoKind)

    @dataclass
    class Impostor:
        kind: ClassVar[str] = "catalog.update"

    with pytest.raises(InvalidValue, match="already registered by UpdateObject"):
        register_command(Impostor)
    with pytest.raises(NotFound, match="no command class is registered for kind 'nope'"):
        command_from_payload("nope", {})


def test_payload_roundtrip_through_nested_composite() -> None:
    cmd = Composite(
        "outer",
        [
            CreateObject(obj_kind="advertiser", data={"name": "A"}),
            Composite(
                "inner", [UpdateObject(obj_kind="campaign", obj_id=3, patch={"status": "active"})]
            ),
        ],
    )
    again = command_from_payload("composite", stored_payload(cmd))
    assert stored_payload(again) == stored_payload(cmd)
    assert isinstance(again, Composite) and isinstance(again.parts[1], Composite)


def test_unregistered_kind_is_imported_from_payload_module() -> None:
    payload = stored_payload(toy_command.SetSegmentSize(7, 10))
    assert payload[MODULE_KEY] == toy_command.__name__
    saved_mod = sys.modules.pop(toy_command.__name__)
    saved_cls = persisted._REGISTRY.pop("test.segment_size")
    try:
        rebuilt = command_from_payload("test.segment_size", payload)
        assert type(rebuilt).__name__ == "SetSegmentSize" and rebuilt.to_payload()["size"] == 10
    finally:
        sys.modules[toy_command.__name__] = saved_mod
        persisted._REGISTRY["test.segment_size"] = saved_cls


def test_custom_command_through_writer_and_restart(factory: Factory) -> None:
    w = CatalogWriter(factory, actor="ingest")
    seg = w.create("segment", {"name": "fans", "kind": "list"})
    out = w.execute(toy_command.SetSegmentSize(seg["id"], 1234))
    assert out == {"segment_id": seg["id"], "last_size": 1234, "actor": "ingest"}
    with factory() as s:
        entry = s.scalars(select(CommandLog).order_by(CommandLog.id.desc())).first()
        assert entry is not None and entry.kind == "test.segment_size"
        assert entry.payload["previous"] is None
    w2 = CatalogWriter(factory, actor="ingest")  # a new writer: state only from the log
    assert w2.undo()["result"] == {"segment_id": seg["id"], "last_size": None}
    assert w2.redo()["result"]["last_size"] == 1234  # default redo = execute again
    with factory() as s:
        assert s.scalar(select(Segment.last_size).where(Segment.id == seg["id"])) == 1234


def test_failing_custom_command_leaves_no_trace(factory: Factory) -> None:
    @dataclass
    class Boom(persisted.PersistedCommandBase):
        kind: ClassVar[str] = "test.boom"
        description: str = "boom"

        def execute(self, ctx: CommandContext) -> dict[str, Any]:
            ctx.session.add(Segment(name="half-done", kind="list"))
            ctx.session.flush()
            raise RuntimeError("disk full")

        def undo(self, ctx: CommandContext) -> dict[str, Any]:
            raise AssertionError("never executed, never undone")

        def to_payload(self) -> dict[str, Any]:
            return {}

        @classmethod
        def from_payload(cls, payload: dict[str, Any]) -> Boom:
            return cls()

    w = CatalogWriter(factory, actor="x")
    with pytest.raises(RuntimeError, match="disk full"):
        w.execute(Boom())
    with factory() as s:
        assert list(s.scalars(select(Segment))) == []
        assert list(s.scalars(select(CommandLog))) == []
