"""``--dry-run`` reports what publishing would change (lists and rule segments) and publishes
nothing: no new version, no segment row, no command in the history."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from adtarget.audience.store import SnapshotStore
from adtarget.catalog.tables import CommandLog, Segment
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.settings import Settings

from .conftest import Runner, write_csv

SCHEMA = {"country": "category", "age": "number"}


def _population(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "pop.csv", "user_id,country,age", "u1,US,30", "u2,CA,40", "u3,US,50", "u4,FR,22"
    )


def _log_size(catalog: sessionmaker[Session]) -> int:
    with catalog() as s:
        return int(s.scalar(select(func.count()).select_from(CommandLog)) or 0)


def test_dry_run_hashed_list_reports_match_rate_and_delta(
    ingest: Runner, tmp_path: Path, store: SnapshotStore, catalog: sessionmaker[Session]
) -> None:
    ingest(_population(tmp_path), schema=SCHEMA)
    before, log = store.versions(), _log_size(catalog)
    digests = [hashlib.sha256(u.encode()).hexdigest() for u in ("u1", "u2", "u4", "x", "y")]
    job = ingest(
        write_csv(tmp_path / "h.csv", "sha", *digests),
        mode="segment",
        segment="buyers",
        hashed=True,
        dry_run=True,
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["dry_run"] is True and job["snapshot"] is None
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (5, 5, 0)
    assert job["report"]["match_rate"] == pytest.approx(3 / 5)
    assert job["report"]["diff"]["segments"]["buyers"] == {"before": 0, "after": 3, "delta": 3}
    diff = job["report"]["diff"]
    assert (diff["users_added"], diff["users_changed"], diff["users_removed"]) == (0, 0, 0)
    assert store.versions() == before and _log_size(catalog) == log
    with catalog() as s:
        assert s.scalar(select(Segment).where(Segment.name == "buyers")) is None
    assert not list(store.root.glob(".tmp-*"))


def test_dry_run_replace_reports_rule_segment_deltas(
    ingest: Runner,
    tmp_path: Path,
    store: SnapshotStore,
    settings: Settings,
    catalog: sessionmaker[Session],
) -> None:
    ingest(_population(tmp_path), schema=SCHEMA)
    writer = CatalogWriter(catalog, actor="tester", settings=settings)
    writer.create("segment", {"name": "usa", "kind": "rule", "rule": 'country in ("US")'})
    ingest(write_csv(tmp_path / "l.csv", "user_id", "u2", "u3"), mode="segment", segment="l")
    current = store.current_version()
    new = write_csv(
        tmp_path / "new.csv", "user_id,country,age", "u1,US,30", "u2,US,41", "u5,US,19", "u6,CA,"
    )
    job = ingest(new, dry_run=True)
    assert job["status"] == "succeeded", job["error"]
    diff = job["report"]["diff"]
    assert (diff["users_added"], diff["users_changed"], diff["users_removed"]) == (2, 1, 2)
    assert diff["segments"]["usa"] == {"before": 2, "after": 3, "delta": 1}
    assert diff["segments"]["l"]["before"] == 2 and diff["segments"]["l"]["after"] == 1
    assert store.current_version() == current
    # the same file, really published, is not mistaken for the dry run (no idempotency hit)
    real = ingest(new)
    assert real["id"] != job["id"] and real["snapshot"] == store.current_version() != current
