"""Sample data for ``adtarget demo``: a seeded user population and delivery events.

Why seeded: the population file is byte-identical on every run, so a second ``adtarget demo``
shows the upload's idempotency (same checksum, nothing published twice) instead of churning
snapshots; events get fresh ids per run because delivery is append-only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

COUNTRIES = ["US", "CA", "GB", "DE", "FR", "BR", "JP", "IN"]
PLANS = ["free", "basic", "standard", "premium"]
DEVICES = ["tv", "mobile", "web", "tablet"]
GENRES = ["drama", "comedy", "scifi", "documentary", "kids", "sports", "horror", "anime"]
LANGUAGES = ["en", "fr", "de", "pt", "ja", "hi", "es"]


def _pick_sets(rng: np.random.Generator, values: list[str], n: int, most: int) -> list[list[str]]:
    sizes = rng.integers(0, most + 1, size=n)
    return [list(rng.choice(values, size=int(k), replace=False)) for k in sizes]


def write_population(path: Path, users: int, seed: int = 7) -> Path:
    """Write ``users`` rows (7 dimensions: 3 category, 1 number, 1 bool, 2 sets) to Parquet.

    Some ages are missing on purpose: the rule semantics (a predicate on a missing value is
    false) are part of what the demo shows.
    """
    rng = np.random.default_rng(seed)
    ages = rng.integers(13, 80, size=users).astype("float64")
    ages[rng.random(users) < 0.05] = np.nan
    table = pa.table(
        {
            "user_id": [f"u{i:07d}" for i in range(users)],
            "country": rng.choice(
                COUNTRIES, size=users, p=[0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]
            ),
            "plan": rng.choice(PLANS, size=users, p=[0.3, 0.3, 0.25, 0.15]),
            "device": rng.choice(DEVICES, size=users),
            "age": pa.array(ages, mask=np.isnan(ages)).cast(pa.int64()),
            "subscriber": rng.random(users) < 0.6,
            "genres": pa.array(_pick_sets(rng, GENRES, users, 3), type=pa.list_(pa.string())),
            "languages": pa.array(_pick_sets(rng, LANGUAGES, users, 2), type=pa.list_(pa.string())),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def delivery_events(
    served: list[dict[str, Any]], *, days: int = 7, now: datetime | None = None, seed: int = 11
) -> list[dict[str, Any]]:
    """Impressions, completions and clicks for the served ``(user, decision)`` pairs over
    ``days`` days, plus retries (duplicate ids) and one malformed event, as ad servers send them.
    """
    rng = np.random.default_rng(seed)
    now = now or datetime.now(UTC)
    events: list[dict[str, Any]] = []
    for k in range(days * 40):
        pick = served[k % len(served)]
        ts = now - timedelta(days=int(rng.integers(0, days)), minutes=int(rng.integers(1, 600)))
        base = {
            "ts": ts.isoformat(),
            "user_id": pick["user_id"],
            "line_item_id": pick["line_item_id"],
            "creative_id": pick["creative_id"],
            "country": pick.get("country"),
            "device": pick.get("device"),
        }
        events.append(
            {
                **base,
                "event_id": str(uuid.uuid4()),
                "type": "impression",
                "cost": round(pick["bid_cpm"] / 1000, 6),
            }
        )
        if rng.random() < 0.7:
            events.append({**base, "event_id": str(uuid.uuid4()), "type": "complete"})
        if rng.random() < 0.05:
            events.append({**base, "event_id": str(uuid.uuid4()), "type": "click"})
    events.extend(dict(e) for e in events[:25])  # an ad server retrying a batch
    events.append({"event_id": "broken-1", "type": "impresion", "ts": "yesterday"})
    return events
