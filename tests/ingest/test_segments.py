"""Segment lists: hashed emails matched after normalization, and ``append`` uploads whose
members each keep their own TTL."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from adtarget.audience.store import SnapshotStore

from .conftest import Runner, write_csv

SCHEMA = {"country": "category", "age": "number"}


def _population(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "pop.csv", "user_id,country,age", "u1,US,30", "u2,CA,40", "u3,US,50", "u4,FR,22"
    )


def test_hashed_emails_match_normalized_ids(
    ingest: Runner, tmp_path: Path, store: SnapshotStore
) -> None:
    """Advertisers hash trimmed lower-case emails; ids stored with capitals still match."""
    pop = write_csv(
        tmp_path / "e.csv",
        "user_id,country",
        "Ann@Example.com,US",
        "bob@example.com,CA",
        "carl@example.com,US",
    )
    ingest(pop, schema=SCHEMA)
    digests = [
        hashlib.sha256(e.encode()).hexdigest()
        for e in ("ann@example.com", "bob@example.com", "nobody@example.com")
    ]
    job = ingest(
        write_csv(tmp_path / "h.csv", "email_sha256", *digests),
        mode="segment",
        segment="crm",
        hashed=True,
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["report"]["match_rate"] == pytest.approx(2 / 3)
    snap = store.current()
    assert snap is not None
    assert {snap.user_id_of(o) for o in snap.index.segment("crm")} == {
        "Ann@Example.com",
        "bob@example.com",
    }


def test_append_keeps_each_uploads_own_ttl(
    ingest: Runner, tmp_path: Path, store: SnapshotStore
) -> None:
    """``append``: a second list joins the segment; each upload's members expire on their own."""
    from adtarget.audience.snapshot import Snapshot

    ingest(_population(tmp_path), schema=SCHEMA)
    ingest(
        write_csv(tmp_path / "a.csv", "user_id", "u1", "u2"),
        mode="segment",
        segment="s",
        ttl_seconds=3600,
    )
    job = ingest(
        write_csv(tmp_path / "b.csv", "user_id", "u3"),
        mode="segment",
        segment="s",
        append=True,
        ttl_seconds=7200,
    )
    assert job["status"] == "succeeded", job["error"]
    snap = store.current()
    assert snap is not None and len(snap.index.segment("s")) == 3
    path, now = snap.path, time.time()
    in_90_min = Snapshot(path, clock=lambda: now + 5400)
    assert {in_90_min.user_id_of(o) for o in in_90_min.index.segment("s")} == {"u3"}
    assert len(Snapshot(path, clock=lambda: now + 7300).index.segment("s")) == 0
    # without append, an upload replaces the members
    ingest(write_csv(tmp_path / "c.csv", "user_id", "u4"), mode="segment", segment="s")
    snap = store.current()
    assert snap is not None and {snap.user_id_of(o) for o in snap.index.segment("s")} == {"u4"}
