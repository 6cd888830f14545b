"""SnapshotStore: atomic publish, readers across processes, rollback, pruning, stale cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.audience.conftest import build, population

from adtarget.audience.store import SnapshotStore
from adtarget.errors import InvalidValue, NotFound


def test_empty_store_has_no_current(store: SnapshotStore) -> None:
    assert store.current() is None
    assert store.versions() == []
    assert store.current_version() is None


def test_publish_is_atomic_for_readers(store: SnapshotStore) -> None:
    old = build(store, population(120))
    held = store.current()
    assert held is old
    new = build(store, population(80, seed=9))
    # the reader that held v1 keeps reading v1; a fresh current() sees v2
    assert held is not None and held.version == "v000001" and held.num_users == 120
    assert held.features(119) is not None and held.user_id_of(119) == "user-00119"
    assert new.version == "v000002" and store.current() is new
    assert store.current() is store.current()  # cached while the pointer is unchanged


def test_other_process_sees_new_version(store: SnapshotStore) -> None:
    build(store, population(30))
    script = textwrap.dedent(
        f"""
        import sys, time
        from adtarget.audience.store import SnapshotStore
        s = SnapshotStore({str(store.root)!r})
        print(s.current().version, flush=True)
        sys.stdin.readline()
        print(s.current().version, s.current().num_users, flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "v000001"
    build(store, population(45))
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().split() == ["v000002", "45"]
    assert proc.wait(timeout=30) == 0


def test_rollback_and_keep_n_pruning(store: SnapshotStore) -> None:
    for n in (10, 20, 30, 40):
        build(store, population(n))
    assert store.versions() == ["v000002", "v000003", "v000004"]  # keep=3
    assert store.rollback("v000002") == "v000002"
    snap = store.current()
    assert snap is not None and snap.version == "v000002" and snap.num_users == 20
    # publishing again makes the new version current and prunes the oldest
    build(store, population(50))
    assert store.versions() == ["v000003", "v000004", "v000005"]
    assert store.current_version() == "v000005"
    with pytest.raises(NotFound):
        store.rollback("v000001")
    with pytest.raises(NotFound):
        store.rollback("../etc")


def test_pruned_snapshot_held_by_a_reader_keeps_working(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "s", keep=1)
    first = build(store, population(40))
    build(store, population(10))
    assert not first.path.exists()
    assert first.num_users == 40 and first.user_id_of(39) == "user-00039"
    assert first.ordinal_of("user-00012") == 12


def test_stale_staging_dirs_are_cleaned_on_open(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stale = root / f".tmp-{dead}-abc"
    stale.mkdir()
    (stale / "ids.data.bin").write_bytes(b"half")
    alive = root / f".tmp-{os.getppid()}-def"  # a live builder elsewhere: left alone
    alive.mkdir()
    store = SnapshotStore(root)
    assert not stale.exists()
    assert alive.exists()
    assert store.current() is None


def test_publish_refuses_unfinished_dir(store: SnapshotStore) -> None:
    staged = store.staging_dir()
    with pytest.raises(InvalidValue):
        store.publish(staged)
    assert store.versions() == []


def test_manifest_records_version_counts_and_checksums(store: SnapshotStore) -> None:
    snap = build(store, population(25))
    m = snap.manifest
    assert m["version"] == "v000001" and m["num_users"] == 25
    assert {"ids.data.bin", "universe.bin", "segments.bin"} <= set(m["checksums"])
    assert store.manifests()[0]["current"] is True


def test_a_wiped_snapshot_dir_keeps_serving_the_mapped_snapshot(store: SnapshotStore) -> None:
    """Losing the directory must not turn every user into an unknown one (wrong matches)."""
    import shutil

    from adtarget.decision.profiles import SnapshotProfileStore

    build(store, population(50))
    profiles = SnapshotProfileStore(store, check_s=0.0)
    before = profiles.get("user-00007")
    assert before is not None
    shutil.rmtree(store.root)
    held = store.current()
    assert held is not None and held.version == "v000001"
    assert profiles.get("user-00007") == before


def test_followers_hear_every_switch_in_order_and_cannot_undo_one(
    store: SnapshotStore, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[str] = []
    store.on_switch = heard.append
    build(store, population(10))
    build(store, population(20))
    store.rollback("v000001")
    assert heard == ["v000001", "v000002", "v000001"]

    def down(version: str) -> None:
        raise ConnectionError("redis down")

    store.on_switch = down
    build(store, population(30))  # the follower fails: the snapshot is live all the same
    assert store.current_version() == "v000003"
    assert "snapshot v000003 is live, but following it failed: redis down" in caplog.text
