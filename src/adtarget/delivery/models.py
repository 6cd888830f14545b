"""Delivery event shape and column-wise validation into one Arrow table.

Why column-wise: batches arrive by the tens of thousands, so each field is checked as one
column (Arrow casts and comparisons) and only a column that fails its fast path is walked row by
row to name the bad rows. Every bad event gets ``{"index", "field", "reason"}``; good ones go on,
so a batch is never silently half-lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Event types and the rollup counter each one feeds.
EVENT_COUNTERS: dict[str, str] = {
    "decision": "requests",
    "impression": "impressions",
    "start": "starts",
    "first_quartile": "first_quartiles",
    "midpoint": "midpoints",
    "third_quartile": "third_quartiles",
    "complete": "completes",
    "click": "clicks",
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_COUNTERS)
#: ``{"type": "quartile", "quartile": Q}`` is stored as the named video progress event.
QUARTILES: dict[str, str] = {
    **dict.fromkeys(("1", "25", "first", "first_quartile"), "first_quartile"),
    **dict.fromkeys(("2", "50", "midpoint", "second"), "midpoint"),
    **dict.fromkeys(("3", "75", "third", "third_quartile"), "third_quartile"),
}

#: Id fields: strings or integers on the wire, strings in storage.
ID_FIELDS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "line_item_id",
    "campaign_id",
    "advertiser_id",
    "creative_id",
)
#: Dimensions every rollup row is keyed by (besides hour/day); missing values are ``""``.
ROLLUP_DIMS: tuple[str, ...] = (
    "advertiser_id",
    "campaign_id",
    "line_item_id",
    "creative_id",
    "country",
    "device",
)
MAX_ID_LENGTH = 256
MAX_COST = Decimal(1_000_000_000)
MICROS = 1_000_000

#: The stored event row; ``cost_micros`` keeps money exact and additive.
EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("day", pa.date32()),
        ("user_id", pa.string()),
        ("line_item_id", pa.string()),
        ("campaign_id", pa.string()),
        ("advertiser_id", pa.string()),
        ("creative_id", pa.string()),
        ("country", pa.string()),
        ("device", pa.string()),
        ("dims", pa.string()),
        ("cost_micros", pa.int64()),
    ]
)

#: line_item_id -> (campaign_id, advertiser_id) for the ids that exist in the catalog.
LineItemLookup = Callable[[Sequence[str]], Mapping[str, tuple[str, str]]]


@dataclass
class ValidatedBatch:
    """Good events (deduplicated within the batch) plus the rejections, by batch index."""

    table: pa.Table
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0


class _Reasons:
    """First reason per row wins, so a row is reported once, for its first bad field."""

    def __init__(self, n: int, offset: int) -> None:
        self.items: list[tuple[str, str] | None] = [None] * n
        self.offset = offset

    def add(self, index: int, fld: str, reason: str) -> None:
        if self.items[index] is None:
            self.items[index] = (fld, f"{fld}: {reason}")

    def add_mask(self, mask: np.ndarray, fld: str, reason: Callable[[int], str]) -> None:
        for i in np.flatnonzero(mask):
            self.add(int(i), fld, reason(int(i)))

    def ok(self) -> np.ndarray:
        return np.array([r is None for r in self.items], dtype=bool)

    def report(self) -> list[dict[str, Any]]:
        return [
            {"index": i + self.offset, "field": r[0], "reason": r[1]}
            for i, r in enumerate(self.items)
            if r is not None
        ]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _not_an_id(value: Any) -> str:
    """Why ``value`` is no id; JSON integers past 64 bits arrive as floats, so say so."""
    if isinstance(value, float) and value.is_integer() and abs(value) >= 2**63:
        return (
            "must be a string or integer; an integer past 64 bits loses digits: send it as a string"
        )
    return f"must be a string or integer, got {type(value).__name__}"


def _id_column(values: list[Any], name: str, required: bool, why: _Reasons) -> list[str]:
    """Ids as strings; ints are accepted and printed; ``""`` stands for missing."""
    try:
        arr = pa.array(values, type=pa.string())
        out: list[str] = arr.fill_null("").to_pylist()
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        out = []
        for i, v in enumerate(values):
            if v is None or isinstance(v, str):
                out.append(v or "")
            elif _is_int(v):
                out.append(str(v))
            else:
                why.add(i, name, _not_an_id(v))
                out.append("")
    for i, s in enumerate(out):
        if required and not s:
            why.add(i, name, "is required")
        elif len(s) > MAX_ID_LENGTH:
            why.add(i, name, f"longer than {MAX_ID_LENGTH} characters")
    return out


def _text_column(values: list[Any], name: str, why: _Reasons) -> list[str]:
    out: list[str] = []
    for i, v in enumerate(values):
        if v is None or isinstance(v, str):
            out.append(v or "")
        else:
            why.add(i, name, f"must be a string, got {type(v).__name__}")
            out.append("")
    return out


def _parse_ts(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            return None
    else:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _ts_column(values: list[Any], why: _Reasons) -> pa.TimestampArray:
    """ISO 8601 to UTC; a naive timestamp is taken to be UTC already."""
    target = pa.timestamp("us", tz="UTC")
    try:
        arr = pa.array(values, type=pa.string()).cast(target)
        if arr.null_count == 0:
            return arr
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    parsed: list[datetime | None] = []
    for i, v in enumerate(values):
        dt = _parse_ts(v)
        if dt is None:
            what = "is required" if v is None else f"not an ISO 8601 timestamp: {v!r}"
            why.add(i, "ts", what)
        parsed.append(dt)
    return pa.array(parsed, type=target)


def _cost_column(values: list[Any], why: _Reasons) -> np.ndarray:
    """Costs as integer micros (6 decimals, rounded half-even): exact sums everywhere."""
    try:
        floats = pa.array(values, type=pa.float64()).fill_null(0.0).to_numpy()
        bad = ~np.isfinite(floats) | (floats < 0) | (floats > float(MAX_COST))
        if not bad.any() and not any(v is True or v is False for v in values):
            fast: np.ndarray = np.rint(floats * MICROS).astype(np.int64)
            return fast
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    micros = np.zeros(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, str, Decimal)):
            why.add(i, "cost", f"must be a number, got {type(v).__name__}")
            continue
        try:
            d = Decimal(str(v))
        except InvalidOperation:
            why.add(i, "cost", f"not a number: {v!r}")
            continue
        if not d.is_finite() or d < 0:
            why.add(i, "cost", f"must be a finite number >= 0, got {v!r}")
        elif d > MAX_COST:
            why.add(i, "cost", f"larger than {MAX_COST}")
        else:
            micros[i] = int((d * MICROS).to_integral_value())
    return micros


def _dims_column(values: list[Any], why: _Reasons) -> list[str | None]:
    if all(v is None for v in values):
        return [None] * len(values)
    out: list[str | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
        elif isinstance(v, Mapping):
            out.append(json.dumps(v, sort_keys=True, default=str))
        elif isinstance(v, str):  # already JSON text (CSV / Parquet imports)
            try:
                ok = isinstance(json.loads(v), dict)
            except ValueError:
                ok = False
            out.append(v if ok else None)
            if not ok:
                why.add(i, "dims", "must be a JSON object")
        else:
            why.add(i, "dims", f"must be an object, got {type(v).__name__}")
            out.append(None)
    return out


def columns_from_records(records: Sequence[Any], why: _Reasons) -> dict[str, list[Any]]:
    """Pivot JSON objects into columns; a non-object is rejected in place."""
    names = (
        "event_id",
        "type",
        "ts",
        *ID_FIELDS[1:],
        "country",
        "device",
        "dims",
        "cost",
        "quartile",
    )
    cols: dict[str, list[Any]] = {}
    empty: dict[str, Any] = {}
    rows = []
    for i, r in enumerate(records):
        if isinstance(r, Mapping):
            rows.append(r)
        else:
            why.add(i, "event", f"must be a JSON object, got {type(r).__name__}")
            rows.append(empty)
    for name in names:
        cols[name] = [r.get(name) for r in rows]
    return cols


def validate_events(
    records: Sequence[Any] | Mapping[str, list[Any]],
    *,
    lookup: LineItemLookup | None = None,
    now: datetime | None = None,
    retention_days: int | None = None,
    index_offset: int = 0,
) -> ValidatedBatch:
    """Check a batch (JSON objects, or columns by field name) and build the stored table.

    Args:
        records: event objects, or a mapping of field name to a column of values.
        lookup: resolves line items in the catalog; unknown ones are rejected and missing
            ``campaign_id``/``advertiser_id`` are filled. Without it both ids are required.
        now: the clock (tests pin it); events more than a day ahead are rejected.
        retention_days: events older than the retention window are rejected, because their
            dedup index may already be dropped and a replay would count twice.
        index_offset: added to each rejected ``index`` (row numbers across a file's batches).
    """
    n = len(next(iter(records.values()), [])) if isinstance(records, Mapping) else len(records)
    why = _Reasons(n, index_offset)
    if isinstance(records, Mapping):
        cols = {k: list(v) for k, v in records.items()}
    else:
        cols = columns_from_records(records, why)
    blank: list[Any] = [None] * n
    ids = {
        f: _id_column(cols.get(f, blank), f, f in ("event_id", "user_id", "line_item_id"), why)
        for f in ID_FIELDS
    }
    type_list = _text_column(cols.get("type", blank), "type", why)
    if "quartile" in type_list:
        _resolve_quartiles(type_list, cols.get("quartile", blank), why)
    types = pa.array(type_list, type=pa.string())
    bad_type = ~pc.is_in(types, value_set=pa.array(EVENT_TYPES)).to_numpy(zero_copy_only=False)
    why.add_mask(
        bad_type,
        "type",
        lambda i: (
            f"unknown event type {types[i].as_py()!r} "
            f"(expected one of {', '.join(EVENT_TYPES)}, quartile)"
        ),
    )
    ts = _ts_column(cols.get("ts", blank), why)
    country = _text_column(cols.get("country", blank), "country", why)
    device = _text_column(cols.get("device", blank), "device", why)
    dims = _dims_column(cols.get("dims", blank), why)
    cost = _cost_column(cols.get("cost", blank), why)

    now = now or datetime.now(UTC)
    ts_us = pc.fill_null(ts.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    future = int((now + timedelta(days=1)).timestamp() * MICROS)
    why.add_mask(
        (ts_us > future) & ~pc.is_null(ts).to_numpy(zero_copy_only=False),
        "ts",
        lambda i: "more than a day in the future",
    )
    if retention_days is not None:
        cutoff_day = now.date() - timedelta(days=retention_days)
        cutoff = int(
            datetime(cutoff_day.year, cutoff_day.month, cutoff_day.day, tzinfo=UTC).timestamp()
            * MICROS
        )
        old = (ts_us < cutoff) & ~pc.is_null(ts).to_numpy(zero_copy_only=False)
        why.add_mask(
            old, "ts", lambda i: f"older than the retention window ({retention_days} days)"
        )
    _resolve_line_items(ids, why, lookup)

    ok = why.ok()
    days = ts.cast(pa.date32())
    duplicates = 0
    seen: set[str] = set()  # by event_id alone: a retry may carry another timestamp
    for i in np.flatnonzero(ok):
        key = ids["event_id"][i]
        if key in seen:
            ok[i] = False
            duplicates += 1
        else:
            seen.add(key)
    table = pa.table(
        {
            "event_id": pa.array(ids["event_id"], pa.string()),
            "type": types,
            "ts": ts,
            "day": days,
            **{f: pa.array(ids[f], pa.string()) for f in ID_FIELDS[1:]},
            "country": pa.array(country, pa.string()),
            "device": pa.array(device, pa.string()),
            "dims": pa.array(dims, pa.string()),
            "cost_micros": pa.array(cost, pa.int64()),
        },
        schema=EVENT_SCHEMA,
    ).filter(pa.array(ok))
    return ValidatedBatch(table=table, rejected=why.report(), duplicates=duplicates)


def _resolve_quartiles(types: list[str], quartiles: list[Any], why: _Reasons) -> None:
    """``type: quartile`` plus ``quartile: 1|2|3`` (or 25/50/75, names) -> the stored type."""
    for i, t in enumerate(types):
        if t != "quartile":
            continue
        q = quartiles[i]
        name = None if q is None or isinstance(q, bool) else QUARTILES.get(str(q).lower())
        if name is None:
            what = "is required" if q is None else f"unknown quartile {q!r}"
            why.add(i, "quartile", f"{what} for a quartile event (1, 2, 3 or 25, 50, 75)")
        else:
            types[i] = name


def _resolve_line_items(
    ids: dict[str, list[str]], why: _Reasons, lookup: LineItemLookup | None
) -> None:
    """Fill or check campaign/advertiser ids against the catalog's line items."""
    good = [int(x) for x in np.flatnonzero(why.ok())]
    if lookup is None:
        for f in ("campaign_id", "advertiser_id"):
            for i in good:
                if not ids[f][i]:
                    why.add(i, f, "is required (no catalog to fill it from the line item)")
        return
    wanted = sorted({ids["line_item_id"][i] for i in good})
    known = lookup(wanted) if wanted else {}
    for i in good:
        li = ids["line_item_id"][i]
        if li not in known:
            why.add(i, "line_item_id", f"unknown line item {li!r}")
            continue
        for f, value in zip(("campaign_id", "advertiser_id"), known[li], strict=True):
            if not ids[f][i]:
                ids[f][i] = value
            elif ids[f][i] != value:
                why.add(i, f, f"{ids[f][i]!r} does not match line item {li!r} ({value!r})")
