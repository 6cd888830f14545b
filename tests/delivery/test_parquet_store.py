"""Parquet store specifics: day layout, the crash windows around the commit, concurrent writers."""

from __future__ import annotations

import fcntl
import multiprocessing
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adtarget.delivery.parquet_store import ParquetEventStore
from adtarget.delivery.service import ingest_events

from .conftest import NOW, make_events


def test_layout_is_day_partitioned_parquet(tmp_path: Path) -> None:
    store = ParquetEventStore(tmp_path / "ev")
    events = make_events(200, seed=1)
    ingest_events(store=store, events=events)
    days = sorted(p.name for p in (tmp_path / "ev").glob("day=*"))
    assert days == sorted({f"day={e['ts'][:10]}" for e in events})
    assert not list((tmp_path / "ev").rglob(".tmp-*"))
    for folder in (tmp_path / "ev").glob("day=*"):
        assert len(list(folder.glob("part-*.parquet"))) == 1  # one file per batch per day


def test_crash_after_commit_is_redone_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Committed but not yet renamed: the next open finishes the rename; a retry is a duplicate."""
    store = ParquetEventStore(tmp_path / "ev")
    events = make_events(150, seed=2)

    def crash(self: ParquetEventStore, moves: object) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ParquetEventStore, "_publish", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest_events(store=store, events=events)
    monkeypatch.undo()
    assert list((tmp_path / "ev").rglob(".tmp-*"))  # the files are still in the temp names
    store.close()

    reopened = ParquetEventStore(tmp_path / "ev")
    assert reopened.scan().num_rows == 150
    assert not list((tmp_path / "ev").rglob(".tmp-*"))
    retry = ingest_events(store=reopened, events=events)
    assert (retry.accepted, retry.duplicates) == (0, 150)


def test_crash_before_commit_counts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failing before COMMIT rolls back the index; the retry is accepted in full."""
    store = ParquetEventStore(tmp_path / "ev")
    events = make_events(120, seed=3)

    def boom(rollup: object) -> list[object]:
        raise OSError("disk full")

    monkeypatch.setattr(ParquetEventStore, "_rollup_params", staticmethod(boom))
    with pytest.raises(OSError):
        ingest_events(store=store, events=events)
    monkeypatch.undo()
    assert store.scan().num_rows == 0 and store.rollups().num_rows == 0
    # a real crash leaves an orphan temp file behind: opening a store removes it
    orphan = tmp_path / "ev" / "day=2026-01-01" / ".tmp-part-x.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"partial")
    store.close()
    store = ParquetEventStore(tmp_path / "ev")
    assert not orphan.exists()
    assert ingest_events(store=store, events=events).accepted == 120
    assert store.scan().num_rows == 120


def test_concurrent_writers_count_each_event_once(tmp_path: Path) -> None:
    """Two store objects (as two processes would) racing over overlapping batches."""
    events = make_events(800, seed=4)
    stores = [ParquetEventStore(tmp_path / "ev") for _ in range(2)]
    accepted = [0, 0]

    def run(k: int) -> None:
        for i in range(0, 800, 100):
            chunk = events[i : i + 100] if k == 0 else events[i + 50 : i + 150]
            accepted[k] += ingest_events(store=stores[k], events=chunk).accepted

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(accepted) == 800
    assert stores[0].scan().num_rows == 800
    assert sum(stores[1].rollups()["requests"].to_pylist()) == sum(
        e["type"] == "decision" for e in events
    )


def test_small_batches_are_compacted_without_changing_counts(tmp_path: Path) -> None:
    store = ParquetEventStore(tmp_path / "ev")
    events = [{**e, "ts": events_day_ts(e)} for e in make_events(700, seed=5)]
    for i in range(0, 700, 20):  # 35 batches into one day: the 32nd triggers a merge
        ingest_events(store=store, events=events[i : i + 20])
    [folder] = list((tmp_path / "ev").glob("day=*"))
    assert len(list(folder.glob("part-*.parquet"))) < 32
    assert store.scan().num_rows == 700
    assert sorted(store.scan()["event_id"].to_pylist()) == sorted(e["event_id"] for e in events)
    assert ingest_events(store=store, events=events).duplicates == 700


def test_crash_inside_compaction_is_finished_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ParquetEventStore(tmp_path / "ev")
    events = [{**e, "ts": events_day_ts(e)} for e in make_events(200, seed=6)]
    for i in range(0, 200, 20):
        ingest_events(store=store, events=events[i : i + 20])
    real = ParquetEventStore._files_lock

    def crash_on_swap(self: ParquetEventStore, mode: int) -> object:
        if mode == fcntl.LOCK_EX:
            raise KeyboardInterrupt("power cut before the swap")
        return real(self, mode)

    monkeypatch.setattr(ParquetEventStore, "_files_lock", crash_on_swap)
    [day] = [p.name[4:] for p in (tmp_path / "ev").glob("day=*")]
    with pytest.raises(KeyboardInterrupt):
        store.compact(date.fromisoformat(day), min_files=2)
    monkeypatch.undo()
    store.close()
    reopened = ParquetEventStore(tmp_path / "ev")
    files = list((tmp_path / "ev").glob("day=*/*.parquet"))
    assert len(files) == 1 and not list((tmp_path / "ev").rglob(".tmp-*"))
    assert reopened.scan().num_rows == 200


def test_a_store_opened_while_a_writer_publishes_its_file_does_not_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker opening the store (``recover``) finds a committed batch still pending while its
    own writer renames the file into place: whoever renames second finds the temp file gone,
    which is done, not an error (a worker failed to start in CI this way)."""
    import os

    from adtarget.delivery import parquet_store

    store = ParquetEventStore(tmp_path / "ev")
    events = [{**e, "ts": events_day_ts(e)} for e in make_events(40, seed=9)]
    real_publish = ParquetEventStore._publish
    held: list[list[tuple[Path, Path]]] = []
    monkeypatch.setattr(ParquetEventStore, "_publish", lambda self, moves: held.append(moves))
    ingest_events(store=store, events=events)  # committed; its rename not done yet
    [moves] = held
    real_replace = os.replace

    def writer_first(src: Any, dst: Any) -> None:  # the writer's rename lands just before
        if Path(src).exists():
            real_replace(src, dst)
        real_replace(src, dst)

    monkeypatch.setattr(parquet_store.os, "replace", writer_first)
    ParquetEventStore(tmp_path / "ev").close()  # recover() with a pending row: no error
    monkeypatch.undo()
    real_publish(store, moves)  # the writer's own rename finds it done too
    store.close()
    reopened = ParquetEventStore(tmp_path / "ev")
    assert sorted(reopened.scan()["event_id"].to_pylist()) == sorted(e["event_id"] for e in events)
    assert not list((tmp_path / "ev").rglob(".tmp-*"))


def events_day_ts(event: dict[str, object]) -> str:
    """The same minute of the test clock's day for every event (one day partition)."""
    return NOW.replace(hour=0, minute=int(str(event["event_id"])[1:]) % 60).isoformat()


def _post_batches(root: str, events: list[dict[str, object]], k: int, errors: Any) -> None:
    """One worker process: its own store, small batches into one day (compacting every ~32)."""
    store = ParquetEventStore(Path(root))
    try:
        for i in range(k * 10, len(events), 40):
            ingest_events(store=store, events=events[i : i + 10])
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        errors.put(repr(exc))
    finally:
        store.close()


def test_workers_compacting_the_same_day_lose_and_double_nothing(tmp_path: Path) -> None:
    """Four worker processes posting small batches into one day, each compacting as it goes:
    every batch is answered, and the log holds each event exactly once."""
    ctx = multiprocessing.get_context("spawn")  # never fork a process with threads
    events = [{**e, "ts": events_day_ts(e)} for e in make_events(1200, seed=8)]
    ParquetEventStore(tmp_path / "ev").close()
    errors = ctx.Queue()
    procs = [
        ctx.Process(target=_post_batches, args=(str(tmp_path / "ev"), events, k, errors))
        for k in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [] and [p.exitcode for p in procs] == [0, 0, 0, 0]
    ids = ParquetEventStore(tmp_path / "ev").scan()["event_id"].to_pylist()
    assert len(ids) == 1200 and sorted(ids) == sorted(e["event_id"] for e in events)
