"""The sampled request log: whole users sampled, never blocking, written by day, pruned."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from adtarget.decision.models import Decision, DecisionRequest, DecisionResult
from adtarget.decision.request_log import RequestLog, user_fraction
from adtarget.decision.request_store import ParquetRequestStore, SampledRequest

SERVED = DecisionResult([Decision(7, 1, 70, 2, 3.5)], snapshot="v1")
TS = datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp()


def test_a_sampled_user_keeps_every_request_and_the_rate_is_kept(tmp_path: Path) -> None:
    store = ParquetRequestStore(tmp_path)
    log = RequestLog(store, sample_rate=0.25, retention_days=100_000)
    users = [f"user-{i}" for i in range(2000)]
    for uid in users:
        for k in range(3):
            log.record(DecisionRequest(uid, {"device": "tv"}, 2, ("video",)), SERVED, ts=TS + k)
    log.flush()
    table = store.read_day(date(2026, 3, 2))
    kept = table.column("user_id").to_pylist()
    expected = {u for u in users if user_fraction(u) < 0.25}
    assert set(kept) == expected
    assert all(kept.count(u) == 3 for u in expected)  # every request of a sampled user
    assert 0.20 < len(expected) / len(users) < 0.30
    row = table.slice(0, 1).to_pylist()[0]
    assert row["context"] == '{"device":"tv"}' and row["formats"] == ["video"]
    assert row["limit"] == 2 and row["served"] == [7] and row["sample_rate"] == 0.25


def test_a_lower_rate_samples_a_subset_of_a_higher_one() -> None:
    users = [f"u{i}" for i in range(5000)]
    low = {u for u in users if user_fraction(u) < 0.01}
    high = {u for u in users if user_fraction(u) < 0.1}
    assert low and low <= high


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    log = RequestLog(ParquetRequestStore(tmp_path), sample_rate=1.0, queue_size=5)
    t = time.perf_counter()
    kept = [log.record(DecisionRequest(f"u{i}"), SERVED, ts=TS) for i in range(20)]
    assert time.perf_counter() - t < 1.0
    assert kept.count(True) == 5 and log.dropped == 15


def test_the_writer_thread_writes_within_the_flush_interval_and_on_close(tmp_path: Path) -> None:
    store = ParquetRequestStore(tmp_path)
    log = RequestLog(store, sample_rate=1.0, flush_seconds=0.2, retention_days=100_000)
    log.start()
    log.record(DecisionRequest("a"), SERVED, ts=TS)
    deadline = time.monotonic() + 10
    while not store.days() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.days() == [date(2026, 3, 2)]
    log.record(DecisionRequest("b"), SERVED, ts=TS + 86_400)
    log.close()  # writes what is queued
    assert store.days() == [date(2026, 3, 2), date(2026, 3, 3)]
    assert log.written == 2


def test_a_full_batch_is_written_at_once_without_waiting_for_the_interval(tmp_path: Path) -> None:
    """The writer sleeps between batches (it does not wake per sampled row and take the GIL
    from the decision path); a batch of ``flush_rows`` wakes it before ``flush_seconds``."""
    store = ParquetRequestStore(tmp_path)
    log = RequestLog(
        store, sample_rate=1.0, flush_rows=10, flush_seconds=60, retention_days=100_000
    )
    log.start()
    for i in range(9):
        log.record(DecisionRequest(f"u{i}"), SERVED, ts=TS)
    time.sleep(0.3)
    assert log.written == 0  # fewer than a batch: kept for the interval
    log.record(DecisionRequest("u9"), SERVED, ts=TS)
    deadline = time.monotonic() + 10
    while log.written < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.written == 10
    log.close()


def test_retention_deletes_whole_old_days(tmp_path: Path) -> None:
    store = ParquetRequestStore(tmp_path)
    now = datetime(2026, 3, 10, tzinfo=UTC)
    for back in (1, 5, 40):
        when = (now - timedelta(days=back)).timestamp()
        store.write([SampledRequest(when, "u", {}, None, 1, (), 1.0)])
    gone = store.prune(35, now)
    assert gone == [date(2026, 1, 29)]
    assert store.days() == [date(2026, 3, 5), date(2026, 3, 9)]


def test_rate_zero_records_nothing(tmp_path: Path) -> None:
    log = RequestLog(ParquetRequestStore(tmp_path), sample_rate=0.0)
    assert log.record(DecisionRequest("u"), SERVED) is False
    log.start()
    log.close()
    assert ParquetRequestStore(tmp_path).days() == []
