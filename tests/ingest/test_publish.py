"""Publishing is a command: undo restores the previous audience exactly, redo re-applies it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.store import SnapshotStore
from adtarget.catalog.tables import CommandLog, Dimension, Segment
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.errors import Conflict
from adtarget.rules.eval_bitmap import count
from adtarget.rules.parse import parse
from adtarget.settings import Settings

from .conftest import Runner, write_csv

SCHEMA = {"country": "category", "age": "number"}
RULES = ['country in ("US")', "age between 20 and 35", 'country in ("CA") or age > 50']


def _sizes(store: SnapshotStore) -> list[int]:
    snap = store.current()
    assert snap is not None
    return [count(parse(r), snap.index) for r in RULES] + [snap.num_users]


def test_undo_redo_restores_sizes_exactly(
    ingest: Runner,
    tmp_path: Path,
    store: SnapshotStore,
    settings: Settings,
    catalog: sessionmaker[Session],
) -> None:
    ingest(
        write_csv(
            tmp_path / "a.csv", "user_id,country,age", "a,US,30", "b,CA,60", "c,US,21", "d,FR,"
        ),
        schema=SCHEMA,
    )
    v1, before = store.current_version(), _sizes(store)
    job = ingest(
        write_csv(tmp_path / "b.csv", "user_id,country,age", "a,CA,70", "e,US,25"), mode="upsert"
    )
    after = _sizes(store)
    assert after != before and job["snapshot"] == store.current_version()
    writer = CatalogWriter(catalog, actor="tester", settings=settings)
    with catalog() as s:
        log = s.scalars(select(CommandLog).order_by(CommandLog.id.desc())).first()
        assert log is not None and log.kind == "upload_publish" and log.actor == "tester"
    undone = writer.undo()
    assert undone["result"]["snapshot"] == v1
    assert store.current_version() == v1 and _sizes(store) == before
    writer.redo()
    assert store.current_version() == job["snapshot"] and _sizes(store) == after


def test_undo_refuses_after_a_later_publish(
    ingest: Runner,
    tmp_path: Path,
    store: SnapshotStore,
    settings: Settings,
    catalog: sessionmaker[Session],
) -> None:
    ingest(write_csv(tmp_path / "a.csv", "user_id,country", "a,US"), schema=SCHEMA, actor="ann")
    ingest(write_csv(tmp_path / "b.csv", "user_id,country", "b,US"), actor="bob")
    ann = CatalogWriter(catalog, actor="ann", settings=settings)
    with pytest.raises(Conflict, match="later publish"):
        ann.undo()
    CatalogWriter(catalog, actor="bob", settings=settings).undo()
    ann.undo()  # now the first publish is on top of the store again
    snap = store.current()
    assert snap is not None and snap.num_users == 0


def test_undo_of_segment_upload_updates_segment_size(
    ingest: Runner,
    tmp_path: Path,
    store: SnapshotStore,
    settings: Settings,
    catalog: sessionmaker[Session],
) -> None:
    ingest(write_csv(tmp_path / "a.csv", "user_id,country", "a,US", "b,CA"), schema=SCHEMA)
    ingest(write_csv(tmp_path / "s.csv", "user_id", "a", "b"), mode="segment", segment="vip")
    writer = CatalogWriter(catalog, actor="tester", settings=settings)

    def size() -> int | None:
        with catalog() as s:
            seg = s.scalar(select(Segment).where(Segment.name == "vip"))
            return None if seg is None else seg.last_size

    assert size() == 2
    writer.undo()
    assert size() == 0 and "vip" not in store.current().segment_names()  # type: ignore[union-attr]
    writer.redo()
    assert size() == 2


def test_undone_upload_can_be_submitted_again(
    ingest: Runner,
    tmp_path: Path,
    store: SnapshotStore,
    settings: Settings,
    catalog: sessionmaker[Session],
) -> None:
    p = write_csv(tmp_path / "a.csv", "user_id,country", "a,US")
    first = ingest(p, schema=SCHEMA)
    CatalogWriter(catalog, actor="tester", settings=settings).undo()
    again = ingest(p, schema=SCHEMA)  # the undo took back the dimensions it registered
    assert again["id"] != first["id"] and again["status"] == "succeeded"
    assert store.current().num_users == 1  # type: ignore[union-attr]


def test_undo_takes_back_the_dimensions_it_registered_unless_something_uses_them(
    ingest: Runner,
    tmp_path: Path,
    settings: Settings,
    catalog: sessionmaker[Session],
) -> None:
    ingest(
        write_csv(tmp_path / "a.csv", "user_id,country,contry,age", "a,US,US,30"),
        schema={**SCHEMA, "contry": "category"},  # a typo column, registered by the upload
    )
    with catalog() as s, s.begin():
        s.add(Segment(name="adults", kind="rule", rule="age >= 18", status="active"))
    writer = CatalogWriter(catalog, actor="tester", settings=settings)
    undone = writer.undo()["result"]
    assert undone["dimensions_removed"] == ["contry", "country"]
    assert undone["dimensions_kept"] == {"age": "used by segment adults"}
    with catalog() as s:
        names = set(s.scalars(select(Dimension.name)))
    assert names == {"age"}
    writer.redo()
    with catalog() as s:
        assert set(s.scalars(select(Dimension.name))) == {"age", "contry", "country"}
    again = writer.undo()["result"]
    assert again["dimensions_removed"] == ["contry", "country"]
