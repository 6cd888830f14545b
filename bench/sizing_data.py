"""Data shape and rule list of ``bench_sizing.py`` (kept apart so the bench stays readable).

The population is what an ads team uploads: a skewed country, a plan, device and genre sets,
an age with few distinct values and a float (watch hours) with many, each with some missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adtarget.rules.registry import DimensionSpec

PLANS = ["ads", "free", "standard", "premium"]
DEVICES = ["tv", "mobile", "web", "tablet", "console"]
GENRES = [
    "scifi",
    "drama",
    "comedy",
    "horror",
    "docs",
    "kids",
    "anime",
    "sports",
    "news",
    "romance",
    "thriller",
    "crime",
    "fantasy",
    "history",
    "music",
    "reality",
    "war",
    "western",
    "family",
    "mystery",
]
REGISTRY = {
    "country": DimensionSpec("country", "category"),
    "plan": DimensionSpec("plan", "category"),
    "devices": DimensionSpec("devices", "set"),
    "genres": DimensionSpec("genres", "set"),
    "age": DimensionSpec("age", "number"),
    "watch_hours": DimensionSpec("watch_hours", "number"),
    "premium": DimensionSpec("premium", "bool"),
}

# At least ten: each clause type, ranges on few- (age) and many-valued (watch_hours) numbers,
# nested or/not. The first is the rule.
RULES = [
    'country in ("C0","C1") and age between 18 and 34 and genres has any ("scifi","horror")'
    ' and plan = "ads" and not (devices has any ("web"))',
    'plan = "ads"',
    'country not in ("C0", "C1", "C2")',
    "age between 18 and 34",
    "watch_hours between 2.5 and 17.3",
    "watch_hours > 40.05 and age >= 50",
    'genres has all ("scifi", "horror")',
    'premium = true and devices has any ("tv", "console") and watch_hours <= 3.3',
    '(country = "C3" or plan = "free") and not (age < 25 or watch_hours >= 50)',
    'country in ("C0","C4") and watch_hours between 1.5 and 20 and genres has any ("drama")'
    ' and plan != "free" and age > 30',
    "age is missing or not (watch_hours between 5 and 10)",
    'country in ("C0","C1") and age between 18 and 34 and genres has any ("scifi","horror")'
    ' and watch_hours >= 12.5 and not (devices has any ("web"))',
]


@dataclass(frozen=True)
class Shape:
    """How the generated population looks (all from the command line)."""

    users: int
    countries: int = 20
    ages: int = 78
    hours: int = 1000
    sort_by: str | None = None
    seed: int = 7


def _category(rng: np.random.Generator, names: list[str], n: int, null: float) -> pa.Array:
    weights = 1.0 / np.arange(1, len(names) + 1)
    codes = rng.choice(len(names), size=n, p=weights / weights.sum()).astype(np.int32)
    mask = rng.random(n) < null if null else None
    return pa.DictionaryArray.from_arrays(pa.array(codes, mask=mask), pa.array(names))


def _set(rng: np.random.Generator, names: list[str], n: int, most: int) -> pa.Array:
    lengths = rng.integers(0, most + 1, n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    # distinct elements per row: a random start and a stride coprime with len(names)
    starts = np.repeat(rng.integers(0, len(names), n), lengths)
    pos = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    codes = (starts + pos * 3) % len(names)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(names).take(pa.array(codes)))


def _chunk(rng: np.random.Generator, shape: Shape, start: int, n: int) -> pa.Table:
    ids = pc.binary_join_element_wise(
        "u", pc.cast(pa.array(rng.permutation(n) + start), pa.string()), ""
    )
    countries = [f"C{i}" for i in range(shape.countries)]
    # watch hours: a skewed float with ~``hours`` distinct values (tenths of an hour)
    hours_idx = np.minimum(rng.gamma(1.5, shape.hours / 8, n).astype(np.int64), shape.hours - 1)
    return pa.table(
        {
            "user_id": ids,
            "country": _category(rng, countries, n, 0.02),
            "plan": _category(rng, PLANS, n, 0.0),
            "devices": _set(rng, DEVICES, n, 3),
            "genres": _set(rng, GENRES, n, 4),
            "age": pa.array(13 + rng.integers(0, shape.ages, n), mask=rng.random(n) < 0.03),
            "watch_hours": pa.array(hours_idx / 10.0, mask=rng.random(n) < 0.05),
            "premium": pa.array(rng.random(n) < 0.3, mask=rng.random(n) < 0.01),
        }
    )


def generate(path: Path, shape: Shape) -> None:
    """Write the population as Parquet in row groups of 1M (sorted by ``sort_by`` if set)."""
    rng = np.random.default_rng(shape.seed)
    writer: pq.ParquetWriter | None = None
    for start in range(0, shape.users, 1_000_000):
        n = min(1_000_000, shape.users - start)
        table = _chunk(rng, shape, start, n)
        if shape.sort_by:
            key = table.column(shape.sort_by)
            if pa.types.is_dictionary(key.type):
                key = key.cast(pa.string())
            table = table.take(pc.sort_indices(key))
        if writer is None:
            writer = pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
