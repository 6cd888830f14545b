"""Hourly rollups: a row per hour x advertiser x campaign x line item x creative x country x device.

Why hourly: day reports are sums of hours, so one additive table answers both granularities.
The same definition exists twice on purpose: ``rollup_batch`` (Arrow, applied to each accepted
batch — the incremental path) and ``rollup_select_sql`` (SQL over the raw log — the rebuild
path, for DuckDB and PostgreSQL alike). Tests prove both give the same table. Reach (unique
users) is not additive and is never rolled up; reports compute it from raw events.
"""

from __future__ import annotations

from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from adtarget.delivery.models import EVENT_COUNTERS, ROLLUP_DIMS

COUNTERS: tuple[str, ...] = (*EVENT_COUNTERS.values(), "spend_micros")
ROLLUP_KEYS: tuple[str, ...] = ("hour", "day", *ROLLUP_DIMS)

ROLLUP_SCHEMA = pa.schema(
    [
        ("hour", pa.timestamp("us", tz="UTC")),
        ("day", pa.date32()),
        *[(d, pa.string()) for d in ROLLUP_DIMS],
        *[(c, pa.int64()) for c in COUNTERS],
    ]
)


class RollupSource(Protocol):
    """Anything that can recompute its rollups from its own raw log."""

    def rebuild_rollups(self) -> None: ...


def rollup_batch(events: pa.Table) -> pa.Table:
    """Aggregate validated events (``EVENT_SCHEMA``) into hourly rollup rows."""
    if events.num_rows == 0:
        return ROLLUP_SCHEMA.empty_table()
    cols: dict[str, Any] = {
        "hour": pc.floor_temporal(events["ts"], unit="hour"),
        "day": events["day"],
        **{d: events[d] for d in ROLLUP_DIMS},
    }
    for etype, counter in EVENT_COUNTERS.items():
        cols[counter] = pc.cast(pc.equal(events["type"], etype), pa.int64())
    cols["spend_micros"] = events["cost_micros"]
    grouped = pa.table(cols).group_by(list(ROLLUP_KEYS)).aggregate([(c, "sum") for c in COUNTERS])
    grouped = grouped.rename_columns(_renamed(grouped.column_names))
    return grouped.select(list(ROLLUP_SCHEMA.names)).cast(ROLLUP_SCHEMA)


def _renamed(names: list[str]) -> list[str]:
    return [n[: -len("_sum")] if n.endswith("_sum") else n for n in names]


def rollup_select_sql(source: str) -> str:
    """``SELECT`` that rolls raw events in ``source`` up by hour (DuckDB and PostgreSQL)."""
    counters = ",\n       ".join(
        f"count(*) FILTER (WHERE type = '{etype}') AS {counter}"
        for etype, counter in EVENT_COUNTERS.items()
    )
    dims = ", ".join(ROLLUP_DIMS)
    return (
        f"SELECT date_trunc('hour', ts) AS hour, day, {dims},\n"
        f"       {counters},\n"
        f"       sum(cost_micros) AS spend_micros\n"
        f"FROM {source}\nGROUP BY date_trunc('hour', ts), day, {dims}"
    )


def sort_rollup(table: pa.Table) -> pa.Table:
    """A canonical order, so two rollups of the same events compare equal."""
    return (
        table.select(list(ROLLUP_SCHEMA.names))
        .cast(ROLLUP_SCHEMA)
        .sort_by([(k, "ascending") for k in ROLLUP_KEYS])
    )


def rebuild_rollups(*, store: RollupSource) -> None:
    """Recompute the store's rollups from its raw event log (after a bug fix, or to audit)."""
    store.rebuild_rollups()
