"""The beacon write-ahead file: what was answered survives ``kill -9`` and counts once.

A real worker process (a child Python running ``BeaconIntake`` on the Parquet event log)
records beacons, says which were answered, and is killed with SIGKILL — before its background
mover ran, or after the mover committed the rows but before it deleted the segment. A new
intake on the same directories must then hold every answered event exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adtarget.delivery.beacon_intake import BeaconIntake
from adtarget.delivery.parquet_store import ParquetEventStore
from adtarget.delivery.wal import WriteAheadLog

WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from adtarget.delivery.beacon_intake import BeaconIntake
    from adtarget.delivery.parquet_store import ParquetEventStore
    from adtarget.delivery.wal import WriteAheadLog

    root, n, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if mode == "moved":  # the mover commits, then dies before deleting the segment
        def hang(self, seg):
            print("MOVED", flush=True)
            time.sleep(3600)
        WriteAheadLog.release = hang
    store = ParquetEventStore(root / "events")
    intake = BeaconIntake(store, root / "wal", flush_interval_s=3600)

    async def main():
        rows = [dict(event_id=f"d{i}.impression", type="impression", ts=sys.argv[4],
                     user_id=f"u{i}", line_item_id="1", campaign_id="2", advertiser_id="3",
                     creative_id="4", cost="0.002") for i in range(n)]
        rows += rows[: n // 2]  # player retries
        await asyncio.gather(*(intake.record(r) for r in rows))

    asyncio.run(main())
    print("ANSWERED", flush=True)
    if mode == "moved":
        intake.flush()
    time.sleep(3600)
    """
)


def _kill_after(root: Path, n: int, mode: str, marker: str) -> None:
    ts = datetime.now(UTC).isoformat(timespec="milliseconds")
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(root), str(n), mode, ts],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == marker:
                break
        else:
            raise AssertionError(f"the worker exited ({proc.wait()}) before {marker}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def _ids(store: ParquetEventStore) -> list[str]:
    ids: list[str] = store.scan().column("event_id").to_pylist()
    return sorted(ids)


def test_beacons_answered_before_a_kill_9_are_replayed_once(tmp_path: Path) -> None:
    _kill_after(tmp_path, 300, "answered", "ANSWERED")
    store = ParquetEventStore(tmp_path / "events")
    assert _ids(store) == []  # the mover never ran: the events were only in the write-ahead file
    intake = BeaconIntake(store, tmp_path / "wal")  # a restarted worker
    try:
        assert _ids(store) == sorted(f"d{i}.impression" for i in range(300))
        assert not list((tmp_path / "wal").glob("*.wal"))  # replayed segments are deleted
    finally:
        intake.close()
        store.close()


def test_a_kill_9_after_the_move_replays_rows_the_log_already_counted_once(
    tmp_path: Path,
) -> None:
    _kill_after(tmp_path, 200, "moved", "MOVED")
    store = ParquetEventStore(tmp_path / "events")
    expected = sorted(f"d{i}.impression" for i in range(200))
    assert _ids(store) == expected  # committed by the mover
    assert list((tmp_path / "wal").glob("*.wal"))  # ...but its segment was never deleted
    intake = BeaconIntake(store, tmp_path / "wal")
    try:
        assert _ids(store) == expected  # the replay's copies were dropped as duplicates
        assert sum(r["impressions"] for r in store.rollups().to_pylist()) == 200
    finally:
        intake.close()
        store.close()


def _row(i: int) -> dict[str, Any]:
    return {"event_id": f"x{i}.click", "type": "click", "user_id": "u", "line_item_id": "1"}


def test_a_live_writers_segment_is_never_taken_for_an_orphan(tmp_path: Path) -> None:
    live = WriteAheadLog(tmp_path)
    live.append([_row(1), _row(2)])
    other = WriteAheadLog(tmp_path)  # another worker scanning the same directory
    assert list(other.orphans()) == []
    live.close()  # still holds rows: left for replay, unlocked
    found = list(other.orphans())
    assert [len(seg.rows) for seg in found] == [2]
    other.release(found[0])
    assert list(tmp_path.iterdir()) == []


def test_a_torn_last_line_was_never_answered_and_is_dropped(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append([_row(1), _row(2)])
    (seg,) = wal.seal()
    with open(seg.path, "ab") as fh:
        fh.write(b'{"event_id": "x3.cl')  # the process died inside this write
    wal.abandon(seg)
    (found,) = list(WriteAheadLog(tmp_path).orphans())
    assert [r["event_id"] for r in found.rows] == ["x1.click", "x2.click"]


def test_after_a_failed_write_the_next_rows_go_to_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails half-way (disk full) leaves part of a line at the end of the file;
    rows written after it in the same file would be glued to it and lost on replay."""
    wal = WriteAheadLog(tmp_path)
    wal.append([_row(1)])
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError):
        wal.append([_row(2)])  # answered with an error: the player retries it
    monkeypatch.setattr(os, "write", real_write)
    wal.append([_row(3)])
    sealed = wal.seal()
    assert [[r["event_id"] for r in seg.rows] for seg in sealed] == [["x1.click"], ["x3.click"]]
    for seg in sealed:
        wal.abandon(seg)
    replayed = sorted(r["event_id"] for seg in WriteAheadLog(tmp_path).orphans() for r in seg.rows)
    assert replayed == ["x1.click", "x3.click"]  # the torn half of x2 dropped, x3 intact
