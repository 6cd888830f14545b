"""The update log: deduplication, sequence order, and pruning that keeps what undo needs."""

from __future__ import annotations

import time
from pathlib import Path

from adtarget.audience.update_log import UpdateLog


def test_append_dedups_orders_and_prunes_but_keeps_the_newest(tmp_path: Path) -> None:
    log = UpdateLog(f"sqlite:///{tmp_path / 'u.sqlite3'}")
    try:
        first = log.append([("a", "u1", "{}"), ("b", "u2", "{}"), ("a", "u1", "{}")])
        assert first.accepted == [(0, 1), (1, 2)] and first.duplicates == [2]
        again = log.append([("b", "u2", "{}"), ("c", "u3", "{}")])
        assert again.accepted == [(1, 3)] and again.duplicates == [0]
        assert [r.seq for r in log.read_after(1)] == [2, 3]
        assert log.prune(through=3, older_than_s=3600) == 0  # too recent: still duplicates
        time.sleep(0.01)
        assert log.prune(through=3, older_than_s=0) == 2  # the newest row always stays
        assert log.last_seq() == 3
        assert log.append([("d", "u4", "{}")]).accepted == [(0, 4)]  # numbering continues
    finally:
        log.close()
