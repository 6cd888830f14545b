"""Upload jobs end to end: modes, formats, error ratio, idempotency, dry run, recovery."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.store import SnapshotStore
from adtarget.catalog.tables import Dimension, Segment, UploadJob
from adtarget.errors import InvalidValue, NotFound
from adtarget.ingest.jobs import get_job, recover_stale_jobs, run_upload, submit_upload
from adtarget.ingest.quarantine import read_quarantine
from adtarget.settings import Settings

from .conftest import Runner, write_csv

SCHEMA = {"country": "category", "age": "number", "genres": "set"}


def _population(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "pop.csv",
        "user_id,country,age,genres",
        "u1,US,30,drama|scifi",
        "u2,CA,40,drama",
        "u3,US,,",
        "u4,FR,22,kids",
    )


def test_replace_csv_registers_schema_and_publishes(
    ingest: Runner, tmp_path: Path, store: SnapshotStore, catalog: sessionmaker[Session]
) -> None:
    job = ingest(_population(tmp_path), schema=SCHEMA)
    assert job["status"] == "succeeded", job["error"]
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (4, 4, 0)
    assert job["quarantine"] is None
    assert job["snapshot"] == store.current_version()
    snap = store.current()
    assert snap is not None and snap.num_users == 4
    assert snap.features_of("u1")["genres"] == frozenset({"drama", "scifi"})  # type: ignore[index]
    with catalog() as s:
        dims = {d.name: d.type for d in s.scalars(select(Dimension))}
    assert dims == SCHEMA


def test_csv_unknown_column_without_schema_fails_naming_it(ingest: Runner, tmp_path: Path) -> None:
    job = ingest(_population(tmp_path))
    assert job["status"] == "failed"
    assert "'country'" in job["error"] and "--schema" in job["error"]


def test_schema_file_and_id_column(ingest: Runner, tmp_path: Path, store: SnapshotStore) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"plan": "category"}))
    p = write_csv(tmp_path / "a.csv", "uid;plan", "x;gold", "y;free")
    job = ingest(p, schema=schema, id_column="uid", delimiter=";")
    assert job["status"] == "succeeded", job["error"]
    snap = store.current()
    assert snap is not None and snap.features_of("y") == {
        "plan": "free",
        "__segments__": frozenset(),
    }


def test_parquet_schema_inference(
    ingest: Runner, tmp_path: Path, store: SnapshotStore, catalog: sessionmaker[Session]
) -> None:
    p = tmp_path / "a.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["a", "b"],
                "country": ["US", "CA"],
                "age": [1, 2],
                "score": [0.5, None],
                "genres": [["x"], []],
                "premium": [True, False],
            }
        ),
        p,
    )
    job = ingest(p)
    assert job["status"] == "succeeded", job["error"]
    with catalog() as s:
        dims = {d.name: d.type for d in s.scalars(select(Dimension))}
    assert dims == {
        "country": "category",
        "age": "number",
        "score": "number",
        "genres": "set",
        "premium": "bool",
    }
    snap = store.current()
    assert snap is not None and snap.features_of("a")["premium"] is True  # type: ignore[index]


def test_jsonl_upsert_keeps_other_users(
    ingest: Runner, tmp_path: Path, store: SnapshotStore
) -> None:
    assert ingest(_population(tmp_path), schema=SCHEMA)["status"] == "succeeded"
    p = tmp_path / "up.jsonl"
    p.write_text(
        '{"user_id": "u2", "country": "US", "age": 41}\n'
        '{"user_id": "u9", "country": "FR", "genres": ["kids"]}\n'
    )
    job = ingest(p, mode="upsert")
    assert job["status"] == "succeeded", job["error"]
    snap = store.current()
    assert snap is not None and snap.num_users == 5
    assert snap.features_of("u2")["age"] == 41  # type: ignore[index]
    assert snap.features_of("u1")["country"] == "US"  # type: ignore[index]
    assert snap.features_of("u9")["genres"] == frozenset({"kids"})  # type: ignore[index]


def test_replace_removes_users_not_in_file(
    ingest: Runner, tmp_path: Path, store: SnapshotStore
) -> None:
    ingest(_population(tmp_path), schema=SCHEMA)
    job = ingest(write_csv(tmp_path / "b.csv", "user_id,country", "u1,US", "u7,CA"))
    assert job["status"] == "succeeded", job["error"]
    snap = store.current()
    assert snap is not None and snap.num_users == 2 and snap.ordinal_of("u2") is None


def test_bad_rows_are_quarantined_and_counted(
    ingest: Runner, tmp_path: Path, settings: Settings
) -> None:
    rows = [f"u{i},US,{i}," for i in range(100)] + ["u100,US,old,", ",US,1,"]
    job = ingest(write_csv(tmp_path / "a.csv", "user_id,country,age,genres", *rows), schema=SCHEMA)
    assert job["status"] == "succeeded", job["error"]
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (102, 100, 2)
    q = read_quarantine(Path(job["quarantine"]))
    assert [(r["line"], r["field"]) for r in q] == [(102, "age"), (103, "user_id")]
    assert q[0]["row"] == "u100,US,old,"
    assert job["report"]["rejected_by_field"] == {"age": 1, "user_id": 1}


def test_error_ratio_fails_job_and_publishes_nothing(
    ingest: Runner, tmp_path: Path, store: SnapshotStore
) -> None:
    first = ingest(_population(tmp_path), schema=SCHEMA)
    rows = [f"u{i},US,{i}," for i in range(10)] + [f"v{i},US,bad," for i in range(5)]
    job = ingest(write_csv(tmp_path / "b.csv", "user_id,country,age,genres", *rows))
    assert job["status"] == "failed"
    assert "5 of 15 rows rejected" in job["error"]
    assert "ADTARGET_INGEST_MAX_ERROR_RATIO" in job["error"]  # the setting that decides it
    assert job["rows_rejected"] == 5 and job["quarantine"] is not None
    assert job["snapshot"] is None
    assert store.current_version() == first["snapshot"]
    assert store.versions() == [first["snapshot"]]
    assert not list(store.root.glob(".tmp-*"))


def test_segment_list_match_rate_and_ttl(
    ingest: Runner, tmp_path: Path, store: SnapshotStore, catalog: sessionmaker[Session]
) -> None:
    ingest(_population(tmp_path), schema=SCHEMA)
    p = write_csv(tmp_path / "seg.csv", "user_id", "u1", "u2", "nobody")
    job = ingest(p, mode="segment", segment="fans", ttl_seconds=3600)
    assert job["status"] == "succeeded", job["error"]
    assert job["report"]["match_rate"] == pytest.approx(2 / 3)
    snap = store.current()
    assert snap is not None and snap.segment_info()["fans"]["size"] == 2
    assert snap.num_users == 4
    with catalog() as s:
        seg = s.scalar(select(Segment).where(Segment.name == "fans"))
        assert seg is not None
        assert (seg.kind, seg.ttl_seconds, seg.last_size, seg.last_snapshot) == (
            "list",
            3600,
            2,
            snap.version,
        )


def test_hashed_segment(ingest: Runner, tmp_path: Path, store: SnapshotStore) -> None:
    ingest(_population(tmp_path), schema=SCHEMA)
    digests = [hashlib.sha256(u.encode()).hexdigest().upper() for u in ("u1", "u3", "zz")]
    p = write_csv(tmp_path / "h.csv", "email_sha256", *digests, "not-a-digest")
    job = ingest(p, mode="segment", segment="hashed", hashed=True)
    assert job["status"] == "failed"  # 1 of 4 rejected is past the 5% default
    job = ingest(
        write_csv(tmp_path / "h2.csv", "email_sha256", *digests),
        mode="segment",
        segment="hashed",
        hashed=True,
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["report"]["segment"]["matched"] == 2
    assert job["report"]["match_rate"] == pytest.approx(2 / 3)
    snap = store.current()
    assert snap is not None
    assert {snap.user_id_of(o) for o in snap.index.segment("hashed")} == {"u1", "u3"}


def test_resubmit_same_file_is_idempotent(
    ingest: Runner, tmp_path: Path, store: SnapshotStore
) -> None:
    p = _population(tmp_path)
    first = ingest(p, schema=SCHEMA)
    again = ingest(p, schema=SCHEMA)
    assert again["id"] == first["id"] and again["idempotent"] is True
    assert store.versions() == [first["snapshot"]]
    other_mode = ingest(p, mode="upsert")
    assert other_mode["id"] != first["id"]


def test_dry_run_reports_diff_and_publishes_nothing(
    ingest: Runner, tmp_path: Path, store: SnapshotStore
) -> None:
    first = ingest(_population(tmp_path), schema=SCHEMA)
    ingest(write_csv(tmp_path / "s.csv", "user_id", "u1", "u2"), mode="segment", segment="s")
    before = store.current_version()
    p = write_csv(
        tmp_path / "b.csv",
        "user_id,country,age,genres",
        "u1,US,30,drama|scifi",
        "u2,US,40,drama",
        "u5,CA,1,",
        "u6,CA,x,",
    )
    job = ingest(p, dry_run=True)
    assert job["status"] == "succeeded", job["error"]
    assert (job["rows_accepted"], job["rows_rejected"]) == (3, 1)
    assert "1 of 4 rows rejected" in job["report"]["would_fail"]
    assert job["snapshot"] is None and store.current_version() == before
    diff = job["report"]["diff"]
    assert (diff["users_added"], diff["users_changed"], diff["users_removed"]) == (1, 1, 2)
    assert diff["segments"]["s"]["before"] == 2
    assert len(store.versions()) == 2 and first["snapshot"] in store.versions()
    assert not list(store.root.glob(".tmp-*"))


def test_progress_callback_and_job_row(
    settings: Settings, catalog: sessionmaker[Session], tmp_path: Path
) -> None:
    p = _population(tmp_path)
    job = submit_upload(
        settings=settings,
        session_factory=catalog,
        path=p,
        mode="replace",
        actor="tester",
        schema=SCHEMA,
    )
    assert job["status"] == "queued"
    seen: list[dict[str, object]] = []
    done = run_upload(job["id"], settings=settings, session_factory=catalog, progress=seen.append)
    assert seen[-1]["rows_read"] == 4 and done["status"] == "succeeded"
    assert get_job(job["id"], session_factory=catalog)["rows_accepted"] == 4
    with pytest.raises(InvalidValue, match="not queued"):
        run_upload(job["id"], settings=settings, session_factory=catalog)
    with pytest.raises(NotFound):
        get_job("nope", session_factory=catalog)


def test_submit_rejects_bad_arguments(
    settings: Settings, catalog: sessionmaker[Session], tmp_path: Path
) -> None:
    p = _population(tmp_path)
    kw = {"settings": settings, "session_factory": catalog, "actor": "t"}
    with pytest.raises(InvalidValue, match="mode"):
        submit_upload(path=p, mode="merge", **kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="segment name"):
        submit_upload(path=p, mode="segment", **kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="does not exist"):
        submit_upload(path=tmp_path / "missing.csv", mode="replace", **kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="type"):
        submit_upload(path=p, mode="replace", schema={"x": "text"}, **kw)  # type: ignore[arg-type]


def test_recover_marks_dead_jobs_failed(
    settings: Settings, catalog: sessionmaker[Session], tmp_path: Path
) -> None:
    job = submit_upload(
        settings=settings,
        session_factory=catalog,
        path=_population(tmp_path),
        mode="replace",
        actor="t",
        schema=SCHEMA,
    )
    dead_pid = 2**22 + 12345  # above pid_max on typical systems: never alive
    from adtarget.ingest.jobs import HOST

    with catalog() as s:
        row = s.get(UploadJob, job["id"])
        assert row is not None
        row.status = "running"
        row.report = {**(row.report or {}), "_pid": dead_pid, "_host": HOST}
        s.commit()
    work = settings.uploads_dir / job["id"] / "work"
    work.mkdir(parents=True)
    assert recover_stale_jobs(settings=settings, session_factory=catalog) == [job["id"]]
    got = get_job(job["id"], session_factory=catalog)
    assert got["status"] == "failed" and "died" in got["error"]
    assert not work.exists()
    assert recover_stale_jobs(settings=settings, session_factory=catalog) == []
    assert os.getpid() != dead_pid


def test_rule_segments_are_sized_and_segment_ttl_applies(
    ingest: Runner,
    tmp_path: Path,
    store: SnapshotStore,
    settings: Settings,
    catalog: sessionmaker[Session],
) -> None:
    from adtarget.commands.catalog_commands import CatalogWriter

    ingest(_population(tmp_path), schema=SCHEMA)
    writer = CatalogWriter(catalog, actor="tester", settings=settings)
    writer.create("segment", {"name": "usa", "kind": "rule", "rule": 'country in ("US")'})
    writer.create("segment", {"name": "fans", "kind": "list", "ttl_seconds": 120})
    job = ingest(
        write_csv(tmp_path / "s.csv", "user_id", "u1", "u2"), mode="segment", segment="fans"
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["report"]["segment"]["expires_at"] is not None
    with catalog() as s:
        sizes = {seg.name: seg.last_size for seg in s.scalars(select(Segment))}
    assert sizes == {"usa": 2, "fans": 2}
    snap = store.current()
    assert snap is not None and "usa" in snap.segment_names()


def test_set_separator_and_max_field_chars(
    ingest: Runner, tmp_path: Path, store: SnapshotStore
) -> None:
    p = write_csv(tmp_path / "a.csv", "user_id,genres", "u1,a;b", "u2,c")
    job = ingest(p, schema={"genres": "set"}, set_separator=";", max_field_chars=3)
    assert job["status"] == "succeeded", job["error"]
    assert job["rows_rejected"] == 0
    snap = store.current()
    assert snap is not None and snap.features_of("u1")["genres"] == frozenset({"a", "b"})  # type: ignore[index]
    job = ingest(write_csv(tmp_path / "b.csv", "user_id,genres", "u1,abcd"), max_field_chars=3)
    assert job["status"] == "failed" and job["rows_rejected"] == 1
