"""The 7-dimension population of the first sizing bench, kept for ``bench_shards.py``.

``bench_sizing.py`` re-exports these names (``GENRES``, ``REGISTRY``, ``RULE``, ``generate``)
so the sharded bench keeps its data and rule while the sizing bench takes its shape from the
command line (``sizing_data.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adtarget.rules.registry import DimensionSpec

COUNTRIES = [
    "US",
    "CA",
    "GB",
    "DE",
    "FR",
    "ES",
    "IT",
    "BR",
    "MX",
    "JP",
    "KR",
    "IN",
    "AU",
    "NL",
    "SE",
    "NO",
    "PL",
    "AR",
    "CL",
    "ZA",
]
PLANS = ["free", "basic", "standard", "premium"]
DEVICES = ["tv", "mobile", "web", "tablet", "console", "stick"]
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
LANGS = ["en", "es", "fr", "de", "it", "pt", "ja", "ko", "hi", "nl"]
RULE = (
    'country in ("US", "CA", "GB") and device in ("tv", "mobile") and age between 18 and 34'
    ' and genres has any ("scifi", "drama") and not premium = true'
)
REGISTRY = {
    "country": DimensionSpec("country", "category"),
    "plan": DimensionSpec("plan", "category"),
    "device": DimensionSpec("device", "category"),
    "age": DimensionSpec("age", "number"),
    "premium": DimensionSpec("premium", "bool"),
    "genres": DimensionSpec("genres", "set"),
    "languages": DimensionSpec("languages", "set"),
}


def _category(rng: np.random.Generator, names: list[str], n: int, null_rate: float) -> pa.Array:
    weights = 1.0 / np.arange(1, len(names) + 1)
    codes = rng.choice(len(names), size=n, p=weights / weights.sum()).astype(np.int32)
    mask = rng.random(n) < null_rate
    return pa.array(names).take(pa.array(codes, mask=mask))


def _set(rng: np.random.Generator, names: list[str], n: int, max_len: int) -> pa.Array:
    lengths = rng.integers(0, max_len + 1, size=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = pa.array(names).take(pa.array(rng.integers(0, len(names), size=int(offsets[-1]))))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def generate(path: Path, users: int, seed: int = 7) -> None:
    """Write the 7-dimension population as Parquet, in row groups of 1M."""
    rng = np.random.default_rng(seed)
    schema = None
    writer = None
    for start in range(0, users, 1_000_000):
        n = min(1_000_000, users - start)
        ids = pc.binary_join_element_wise(
            "u", pc.cast(pa.array(rng.permutation(n) + start), pa.string()), ""
        )
        table = pa.table(
            {
                "user_id": ids,
                "country": _category(rng, COUNTRIES, n, 0.02),
                "plan": _category(rng, PLANS, n, 0.0),
                "device": _category(rng, DEVICES, n, 0.05),
                "age": pa.array(rng.integers(18, 81, size=n), mask=rng.random(n) < 0.03),
                "premium": pa.array(rng.random(n) < 0.3, mask=rng.random(n) < 0.01),
                "genres": _set(rng, GENRES, n, 4),
                "languages": _set(rng, LANGS, n, 2),
            }
        )
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(str(path), schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
