"""Delivery reports: any slice of the hourly rollups, plus exact reach from raw events.

Why split: counters are additive, so they come from the small rollup table; reach (unique
users with an impression) is not, so it is counted from the raw log for exactly the requested
slice. One SQL text serves DuckDB (Parquet store) and PostgreSQL; ratios are derived here in
Python from the sums, so both back ends give identical numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pyarrow as pa

from adtarget.delivery.models import EVENT_COUNTERS, MICROS
from adtarget.delivery.store import EventStore, ReportQuery
from adtarget.errors import InvalidValue

GROUPS: dict[str, str] = {
    "hour": "hour",
    "day": "day",
    "advertiser": "advertiser_id",
    "advertiser_id": "advertiser_id",
    "campaign": "campaign_id",
    "campaign_id": "campaign_id",
    "line_item": "line_item_id",
    "line_item_id": "line_item_id",
    "line-item": "line_item_id",
    "creative": "creative_id",
    "creative_id": "creative_id",
    "country": "country",
    "geo": "country",
    "device": "device",
}
"""Accepted ``group_by`` names and the column each groups on (``geo`` is the event's country)."""
DEFAULT_DAYS = 7
"""Without dates, a report covers the last 7 days up to today (UTC), as the client does."""
FLOAT_METRICS = frozenset({"spend", "ctr", "completion_rate", "ecpm"})
COUNTER_METRICS: tuple[str, ...] = tuple(EVENT_COUNTERS.values())
#: The issue's words for two counters, accepted as metric names of their own.
ALIASES: dict[str, str] = {"served": "requests", "completions": "completes"}
DERIVED: dict[str, tuple[str, ...]] = {
    **{alias: (counter,) for alias, counter in ALIASES.items()},
    "spend": ("spend_micros",),
    "ctr": ("clicks", "impressions"),
    "completion_rate": ("completes", "impressions"),
    "ecpm": ("spend_micros", "impressions"),
}
METRICS: tuple[str, ...] = (*COUNTER_METRICS, *DERIVED, "reach")


def _as_datetime(value: date | datetime | str, fld: str, *, end: bool) -> datetime:
    """Dates are whole UTC days (``to`` inclusive); datetimes are floored to the hour."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidValue(
                f"{fld}: not an ISO 8601 date or time: {value!r}", field=fld
            ) from exc
    if isinstance(value, datetime):
        dt = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return dt.replace(minute=0, second=0, microsecond=0)
    try:
        day = value + timedelta(days=1) if end else value
    except OverflowError:
        raise InvalidValue(
            f"{fld}: {value} is past the last day a report can end", field=fld
        ) from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def parse_names(values: Sequence[str] | str, allowed: Sequence[str], fld: str) -> list[str]:
    """Split ``a,b`` lists and reject unknown names, naming them."""
    items = values.split(",") if isinstance(values, str) else list(values)
    out = [v.strip() for v in items if v.strip()]
    for v in out:
        if v not in allowed:
            raise InvalidValue(
                f"{fld}: unknown name {v!r} (allowed: {', '.join(allowed)})", field=fld, value=v
            )
    return out


def make_query(
    *,
    start: date | datetime | str,
    end: date | datetime | str,
    group_by: Sequence[str] | str,
    metrics: Sequence[str] | str,
    advertiser_id: str | None = None,
) -> tuple[ReportQuery, list[str], list[str]]:
    """Validate a request into a ``ReportQuery`` plus output group and metric names."""
    t0 = _as_datetime(start, "from", end=False)
    t1 = _as_datetime(end, "to", end=True)
    if t1 <= t0:
        raise InvalidValue("to: must be after from", field="to")
    groups = [GROUPS[g] for g in parse_names(group_by, list(GROUPS), "group_by")]
    groups = list(dict.fromkeys(groups))
    names = parse_names(metrics, METRICS, "metrics") or ["impressions", "clicks", "spend"]
    names = list(dict.fromkeys(names))
    needed: list[str] = []
    for m in names:
        for c in DERIVED.get(m, (m,) if m in COUNTER_METRICS else ()):
            if c not in needed:
                needed.append(c)
    query = ReportQuery(
        start=t0,
        end=t1,
        group_by=tuple(groups),
        counters=tuple(needed),
        reach="reach" in names,
        advertiser_id=advertiser_id,
    )
    return query, groups, names


def report_sql(
    query: ReportQuery, *, stats: str, events: str, placeholder: str, daily: bool = False
) -> tuple[str, list[Any]]:
    """The report as one SQL statement (DuckDB and PostgreSQL) and its parameters.

    ``stats`` is an hourly rollup relation (or a daily one with ``daily=True``: a ``day``
    column instead of ``hour``); ``events`` is the raw log, used only for reach.
    """
    p = placeholder
    keys = list(query.group_by)
    params: list[Any] = []
    if daily:
        where = f"day >= {p} AND day < {p}"
        params += [query.start.date(), query.end.date()]
    else:
        where = f"hour >= {p} AND hour < {p}"
        params += [query.start, query.end]
    if query.advertiser_id is not None:
        where += f" AND advertiser_id = {p}"
        params.append(query.advertiser_id)
    sums = ", ".join(f"sum({c}) AS {c}" for c in query.counters) or "count(*) AS n_rows"
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    sel_keys = "".join(f"{k}, " for k in keys)
    sql = f"WITH s AS (SELECT {sel_keys}{sums} FROM {stats} WHERE {where}{group})"
    if not query.reach:
        order = f" ORDER BY {', '.join(keys)}" if keys else ""
        return f"{sql} SELECT * FROM s{order}", params
    ev_keys = ["date_trunc('hour', ts)" if k == "hour" else k for k in keys]
    ev_where = f"type = 'impression' AND ts >= {p} AND ts < {p} AND day >= {p} AND day <= {p}"
    params += [
        query.start,
        query.end,
        query.start.date(),
        (query.end - timedelta(microseconds=1)).date(),
    ]
    if query.advertiser_id is not None:
        ev_where += f" AND advertiser_id = {p}"
        params.append(query.advertiser_id)
    ev_sel = "".join(f"{e} AS {k}, " for e, k in zip(ev_keys, keys, strict=True))
    ev_group = f" GROUP BY {', '.join(ev_keys)}" if keys else ""
    sql += (
        f", r AS (SELECT {ev_sel}count(DISTINCT user_id) AS reach FROM {events}"
        f" WHERE {ev_where}{ev_group})"
    )
    on = " AND ".join(f"s.{k} = r.{k}" for k in keys) or "TRUE"
    cols = ", ".join(
        [*(f"s.{k}" for k in keys), *(f"s.{c}" for c in query.counters or ["n_rows"]), "r.reach"]
    )
    order = f" ORDER BY {', '.join(f's.{k}' for k in keys)}" if keys else ""
    return f"{sql} SELECT {cols} FROM s LEFT JOIN r ON {on}{order}", params


def raw_report_sql(query: ReportQuery, *, events: str, placeholder: str) -> tuple[str, list[Any]]:
    """The report computed in one pass over raw events (DuckDB and PostgreSQL).

    Used when reach is asked for: the raw slice must be scanned for it anyway, and summing the
    counters in that same scan is cheaper than also reading the rollups. The counters are the
    rollups' own definition (``rollup_select_sql``), so both paths give equal numbers.
    """
    p = placeholder
    keys = list(query.group_by)
    exprs = ["date_trunc('hour', ts)" if k == "hour" else k for k in keys]
    by_counter = {c: t for t, c in EVENT_COUNTERS.items()}
    aggs = [
        f"sum(cost_micros) AS {c}"
        if c == "spend_micros"
        else f"count(*) FILTER (WHERE type = '{by_counter[c]}') AS {c}"
        for c in query.counters
    ]
    if query.reach:
        aggs.append("count(DISTINCT user_id) FILTER (WHERE type = 'impression') AS reach")
    where = f"day >= {p} AND day <= {p}"
    params: list[Any] = [query.start.date(), (query.end - timedelta(microseconds=1)).date()]
    if query.start.time() != time(0) or query.end.time() != time(0):
        # an hour window; for whole days the ``day`` partition column alone is exact
        where = f"ts >= {p} AND ts < {p} AND {where}"
        params = [query.start, query.end, *params]
    if query.advertiser_id is not None:
        where += f" AND advertiser_id = {p}"
        params.append(query.advertiser_id)
    sel = ", ".join(
        [
            *(f"{e} AS {k}" for e, k in zip(exprs, keys, strict=True)),
            *(aggs or ["count(*) AS n_rows"]),
        ]
    )
    tail = f" GROUP BY {', '.join(exprs)} ORDER BY {', '.join(exprs)}" if keys else ""
    return f"SELECT {sel} FROM {events} WHERE {where}{tail}", params


def _key_value(name: str, value: Any) -> Any:
    if value is None or value == "":
        return None
    if name == "hour" and isinstance(value, datetime):
        v = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return v.strftime("%Y-%m-%dT%H:00:00Z")
    if name == "day" and isinstance(value, date):
        return value.isoformat()
    return value


def _ratio(num: int, den: int, scale: float = 1.0) -> float | None:
    return round(num * scale / den, 6) if den else None


def derive_rows(
    raw: list[dict[str, Any]], groups: list[str], names: list[str]
) -> list[dict[str, Any]]:
    """Turn summed counters into the requested metrics, in the requested order."""
    out: list[dict[str, Any]] = []
    for r in raw:
        c = {k: int(r.get(k) or 0) for k in (*COUNTER_METRICS, "spend_micros", "reach")}
        row = {g: _key_value(g, r.get(g)) for g in groups}
        for m in names:
            if m in COUNTER_METRICS or m == "reach":
                row[m] = c[m]
            elif m in ALIASES:
                row[m] = c[ALIASES[m]]
            elif m == "spend":
                row[m] = round(c["spend_micros"] / MICROS, 6)
            elif m == "ctr":
                row[m] = _ratio(c["clicks"], c["impressions"])
            elif m == "completion_rate":
                row[m] = _ratio(c["completes"], c["impressions"])
            elif m == "ecpm":
                row[m] = _ratio(c["spend_micros"], c["impressions"], 1000 / MICROS)
        out.append(row)
    return out


def run_report(
    *,
    store: EventStore,
    start: date | datetime | str,
    end: date | datetime | str,
    group_by: Sequence[str] | str,
    metrics: Sequence[str] | str,
    advertiser_id: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``group_by`` keys and ``metrics`` for ``[start, end]``.

    Args:
        store: the event store to read.
        start: first day (or hour) included, UTC.
        end: last day included (a date), or the exclusive end hour (a datetime).
        group_by: names from ``GROUPS`` (``campaign``, ``day``, ...); ``[]`` gives one total row.
        metrics: names from ``METRICS``; unknown names raise ``InvalidValue`` naming them.
        advertiser_id: restrict to one advertiser (advertiser API keys always set it).
    """
    query, groups, names = make_query(
        start=start, end=end, group_by=group_by, metrics=metrics, advertiser_id=advertiser_id
    )
    return derive_rows(store.query_report(query), groups, names)


def report_names(
    group_by: Sequence[str] | str, metrics: Sequence[str] | str
) -> tuple[list[str], list[str]]:
    """Canonical output group keys and metric names of a request (validated)."""
    _, groups, names = make_query(
        start="2000-01-01", end="2000-01-01", group_by=group_by, metrics=metrics
    )
    return groups, names


def report_columns(group_by: Sequence[str] | str, metrics: Sequence[str] | str) -> list[str]:
    """The output columns of a report (group keys then metrics), e.g. for a CSV header."""
    groups, names = report_names(group_by, metrics)
    return [*groups, *names]


def default_window(today: date | None = None) -> tuple[date, date]:
    """``(first, last)`` day of the default report window: the last ``DEFAULT_DAYS`` days."""
    last = today if today is not None else datetime.now(UTC).date()
    return last - timedelta(days=DEFAULT_DAYS - 1), last


def rows_to_arrow(rows: list[dict[str, Any]], columns: Sequence[str]) -> pa.Table:
    """Report rows as a typed ``pyarrow.Table`` (for Parquet): ``hour`` a UTC timestamp, ``day``
    a date, other keys text, counters int64, money and ratios float64; typed when empty too."""
    fields = []
    for c in columns:
        if c == "hour":
            kind: Any = pa.timestamp("us", tz="UTC")
        elif c == "day":
            kind = pa.date32()
        elif c in GROUPS.values():
            kind = pa.string()
        else:
            kind = pa.float64() if c in FLOAT_METRICS else pa.int64()
        fields.append(pa.field(c, kind))

    def value(c: str, v: Any) -> Any:
        if v is None:
            return None
        if c == "hour":
            return datetime.fromisoformat(str(v).replace("Z", "+00:00"))
        if c == "day":
            return date.fromisoformat(str(v))
        if c in GROUPS.values():
            return str(v)
        return v

    data = {c: [value(c, r.get(c)) for r in rows] for c in columns}
    return pa.table(data, schema=pa.schema(fields))


def rows_to_csv(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text with a header row; ``None`` is an empty field."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
