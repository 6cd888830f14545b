"""Both request-log stores (Parquet by day, PostgreSQL) keep and return the same rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from adtarget.decision.request_store import ParquetRequestStore, RequestStore, SampledRequest
from adtarget.decision.request_stores import request_store_for
from adtarget.errors import InvalidValue
from adtarget.settings import Settings

DAY1 = datetime(2026, 3, 2, 10, tzinfo=UTC).timestamp()
DAY2 = datetime(2026, 3, 3, 23, 59, tzinfo=UTC).timestamp()
ROWS = [
    SampledRequest(DAY1 + 5, "b", {"device": "tv"}, ("video",), 2, (7, 9), 0.5, {"slots": 2}),
    SampledRequest(DAY1, "a", {}, None, 1, (), 0.5),
    SampledRequest(DAY2, "c", {"n": 1}, ("a", "b"), 1, (3,), 0.25),
]


@pytest.fixture(params=["parquet", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], RequestStore]:
    if request.param == "parquet":
        return lambda: ParquetRequestStore(tmp_path / "requests")
    url = request.getfixturevalue("pg_url")
    settings = Settings(data_dir=tmp_path, request_log_store="postgres", catalog_url=url)
    return lambda: request_store_for(settings)


def test_rows_round_trip_by_day_in_time_order(make_store: Callable[[], RequestStore]) -> None:
    store = make_store()
    assert store.days() == []
    assert store.write(ROWS[:2]) == 2
    assert make_store().write(ROWS[2:]) == 1  # another writer (worker, node) appends
    assert store.days() == [date(2026, 3, 2), date(2026, 3, 3)]
    first = store.read_day(date(2026, 3, 2))
    got = sorted(first.to_pylist(), key=lambda r: r["ts"])
    assert [r["user_id"] for r in got] == ["a", "b"]
    assert got[1] == {
        "ts": DAY1 + 5, "user_id": "b", "context": '{"device":"tv"}', "formats": ["video"],
        "limit": 2, "pod": '{"slots":2}', "served": [7, 9], "sample_rate": 0.5,
    }  # fmt: skip
    assert got[0]["formats"] is None and got[0]["served"] == [] and got[0]["pod"] is None
    assert store.read_day(date(2026, 3, 5)).num_rows == 0


def test_a_day_read_again_after_more_rows_has_them(
    make_store: Callable[[], RequestStore],
) -> None:
    """Days read are kept for the next forecast, by the day's version: rows appended since
    (another writer) are read, never an old copy."""
    store = make_store()
    store.write(ROWS[:1])
    assert store.read_day(date(2026, 3, 2)).num_rows == 1
    assert store.read_day(date(2026, 3, 2)).num_rows == 1  # kept
    make_store().write([SampledRequest(DAY1 + 9, "d", {}, None, 1, (), 0.5)])
    assert sorted(store.read_day(date(2026, 3, 2)).column("user_id").to_pylist()) == ["b", "d"]
    assert store.prune(0, datetime(2026, 3, 4, tzinfo=UTC)) == [date(2026, 3, 2)]
    assert store.read_day(date(2026, 3, 2)).num_rows == 0


def test_retention_deletes_whole_days(make_store: Callable[[], RequestStore]) -> None:
    store = make_store()
    store.write(ROWS)
    assert store.prune(1, datetime(2026, 3, 4, tzinfo=UTC)) == [date(2026, 3, 2)]
    assert store.days() == [date(2026, 3, 3)]


def test_postgres_store_needs_a_postgres_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, request_log_store="postgres")
    with pytest.raises(InvalidValue) as err:
        request_store_for(settings)
    assert err.value.field == "ADTARGET_REQUEST_LOG_URL"


def test_a_parquet_file_written_before_a_column_existed_reads_with_it_empty(
    tmp_path: Path,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "requests" / "day=2026-03-02"
    folder.mkdir(parents=True)
    old = pa.table({"ts": [DAY1], "user_id": ["a"], "context": ["{}"], "formats": [None],
                    "limit": pa.array([1], pa.int32()), "served": [[4]],
                    "sample_rate": [0.5]})  # fmt: skip
    pq.write_table(old, folder / "part-1-1-1.parquet")  # no "pod" column yet
    table = ParquetRequestStore(tmp_path / "requests").read_day(date(2026, 3, 2))
    assert table.column("pod").to_pylist() == [None]
    assert table.column("served").to_pylist() == [[4]]
