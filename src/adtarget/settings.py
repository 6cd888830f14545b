"""One settings object for the whole process, read from ``ADTARGET_*`` environment variables.

Why one object: every layer (catalog, audience, decision, delivery, API, CLI) reads the same
configuration, and tests build a ``Settings(data_dir=tmp_path)`` instead of patching globals.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from adtarget.errors import InvalidValue


class Settings(BaseSettings):
    """Process configuration; every field maps to ``ADTARGET_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ADTARGET_", extra="ignore")

    data_dir: Path = Field(default=Path("./adtarget-data"))
    catalog_url: str | None = None
    redis_url: str | None = None
    redis_cluster: bool | None = None
    """``true`` forces Redis Cluster mode, ``false`` single Redis; unset asks the node named by
    ``redis_url`` (``INFO cluster``), so the URL may name any node of a cluster."""
    profile_store: Literal["snapshot", "redis"] = "snapshot"
    redis_profile_prefix: str = Field(default="adtarget:profile:", min_length=1)
    counter_store: Literal["memory", "sqlite", "redis"] = "sqlite"
    events_store: Literal["parquet", "postgres"] = "parquet"
    events_url: str | None = None
    events_retention_days: int = Field(default=400, ge=1)
    events_dedup_hours: int = Field(default=48, ge=1, le=24 * 366)
    """A delivery event is a duplicate when its ``event_id`` was recorded within this many hours,
    whatever its timestamp says (a retry may regenerate ``ts`` across midnight)."""
    min_audience_size: int = Field(default=100, ge=0)
    sizing_cache: bool = True
    """Keep results of rule sub-expressions per snapshot, so a rule edited one clause at a time
    redoes only that clause (``audience/results.py``); off to measure every call cold."""
    snapshots_keep: int = Field(default=5, ge=1)
    history_depth: int = Field(default=200, ge=1)
    ingest_max_error_ratio: float = Field(default=0.05, ge=0.0, le=1.0)
    ingest_batch_rows: int = Field(default=262_144, ge=1)
    ingest_max_dimensions: int = Field(default=1000, ge=1, le=10_000)
    """Dimension columns one upload may carry (and an upsert's snapshot may end up with). Each
    dimension is a few memory-mapped files in every open snapshot, and the kernel bounds the
    mappings of a process (``vm.max_map_count``, 65,530 by default), so width is capped at the
    door with an error naming the file instead of failing somewhere inside a build."""
    tracking_keys: str | None = None
    """Keys that sign tracking URLs, comma-separated: the first signs, every one listed verifies
    (rotate by putting the new key first and dropping the old one after one TTL). Unset: one key
    generated in the data dir (one machine); a fleet of hosts must share this setting."""
    tracking_ttl_seconds: int = Field(default=86_400, ge=60)
    """How long a tracking URL is accepted after its decision."""
    tracking_base_url: str = ""
    """Prefix of tracking URLs, e.g. ``https://ads.example.com``; empty: root-relative."""
    beacon_backlog_mb: int = Field(default=512, ge=1)
    """Beacons answered but not yet in the event log, per worker, at most (its write-ahead
    file, ``delivery/wal.py``): past it, beacons are answered 503 until the log catches up,
    rather than filling the disk and memory while the event log is down."""
    admin_key: str | None = None
    allow_open: bool = True
    """``False``: never run open, even with no API key at all. ``adtarget serve`` sets it for its
    workers from the decision it made at start, so no worker decides open mode later."""
    actor: str | None = None
    max_inflight: int = Field(default=512, ge=1)
    request_deadline_ms: int = Field(default=50, ge=1)
    store_timeout_ms: int = Field(default=20, ge=1)
    decide_in_thread: bool = False
    """With Redis stores, run each decision in a thread under ``asyncio.wait_for`` (an answer
    later than the deadline becomes an empty degraded one) instead of on the event loop. Off
    by default: the hop cost 60-160 µs of CPU per request on a 2-core box (2026-12-06), and a
    Redis call on the loop is bounded by ``store_timeout_ms`` (a hung node blocks the loop for
    at most its timeout times the retries, until its breaker opens)."""
    redis_async_reads: bool = True
    """With Redis profiles and the engine on the event loop, the route reads the user's profile
    and counters on the loop before deciding (``decision/redis_async.py``: pipelined per node,
    one write per loop turn) instead of blocking the loop for the round trip inside ``decide``.
    ``False`` keeps the blocking read (the benchmark compares both)."""
    index_check_seconds: float = Field(default=300.0, gt=0)
    """How often each decision process rebuilds its index from scratch and checks that the
    index patched from catalog changes agrees (a disagreement is logged, counted, healed)."""
    catalog_changes_keep_seconds: float = Field(default=86_400.0, gt=0)
    """How long a row of the catalog change log is kept: catalog writes prune older rows (at
    most every few minutes per process). A decision process further behind than this heals by
    its periodic full rebuild (``index_check_seconds``), so keep it well above that."""
    index_poll_seconds: float = Field(default=2.0, gt=0)
    """The safety-net read of the catalog change log when no change was announced."""
    index_freeze_gc: bool = True
    """After each decision-index rebuild, move live objects out of the cyclic GC's scans
    (``gc.freeze``): at 100,000 line items a full collection otherwise stalls every request
    for 1.2-1.8 s. Off in the test suite, which builds hundreds of apps in one process."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    audience_backend: Literal["local", "ray"] = "local"
    """Where a sharded snapshot's sizes, overlaps and exports are computed: in this process,
    or in Ray shard hosts (one per node, each serving several shards) at ``ray_address``."""
    ray_address: str | None = None
    """A Ray cluster address (``host:port`` of the GCS, ``ray://...``), or ``local`` to start
    Ray in this process. Unset: ``local``."""
    ray_shard_hosts: int | None = Field(default=None, ge=1)
    """How many Ray shard hosts serve a version (default: one per node, at most one per
    shard). More hosts run more shards at once on nodes with several cores; each costs the
    serving process one more Ray call per answer."""
    shard_deadline_ms: int = Field(default=2000, ge=1)
    """How long an audience answer waits for every shard actor before answering 503
    ``shard_unavailable`` (the Ray backend; a partial sum is never returned)."""
    updates_url: str | None = None
    """Where the profile update log lives (default: the catalog's PostgreSQL, so a fleet shares
    it, else ``data_dir/updates.sqlite3``)."""
    updates_poll_ms: int = Field(default=100, ge=5)
    """How often a process reads updates other processes or nodes logged."""
    compact_after_updates: int = Field(default=500_000, ge=1)
    """Fold the deltas into a new snapshot version once this many updates are pending."""
    updates_dedup_seconds: float = Field(default=7 * 86_400, ge=0)
    """How long an ``update_id`` is remembered as a duplicate after compaction folded it in."""

    request_log_sample_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    """Share of users whose ad requests the decision route logs for forecasting (by a stable
    hash of the user id, so a sampled user's every request is kept); 0 turns the log off."""
    request_log_store: Literal["parquet", "postgres"] = "parquet"
    """Where sampled requests are kept: Parquet by day in the data dir, or a PostgreSQL table
    (``request_log_url``) that every node of a fleet writes and every forecast reads."""
    request_log_url: str | None = None
    """The PostgreSQL URL of the request log (default: the catalog's, when it is PostgreSQL)."""
    request_log_queue_size: int = Field(default=100_000, ge=1)
    """Sampled rows waiting for the writer thread at most; beyond, samples are dropped (counted),
    never the decision slowed."""
    request_log_flush_seconds: float = Field(default=5.0, gt=0)
    """The writer writes one Parquet file at most this long after a row arrived."""
    request_log_retention_days: int = Field(default=35, ge=1)
    """Days of sampled requests kept (the forecaster looks back ``forecast_lookback_days``)."""
    forecast_lookback_days: int = Field(default=28, ge=1)
    """History the forecaster projects onto a flight: the most recent days of this many."""

    @property
    def resolved_catalog_url(self) -> str:
        """The catalog URL, defaulting to a SQLite file inside the data dir."""
        if self.catalog_url:
            return self.catalog_url
        return f"sqlite:///{(self.data_dir / 'catalog.sqlite3').resolve()}"

    @property
    def resolved_updates_url(self) -> str:
        """The update log's URL: explicit, else a PostgreSQL catalog's, else a data-dir file."""
        if self.updates_url:
            return self.updates_url
        if self.catalog_url and self.catalog_url.startswith(("postgres", "postgresql")):
            return self.catalog_url
        return f"sqlite:///{(self.data_dir / 'updates.sqlite3').resolve()}"

    @property
    def snapshots_dir(self) -> Path:
        """Where audience snapshots are published (``vNNNNNN`` directories)."""
        return self.data_dir / "snapshots"

    @property
    def events_dir(self) -> Path:
        """Where the Parquet event log lives, partitioned by day."""
        return self.data_dir / "events"

    @property
    def requests_dir(self) -> Path:
        """Where the sampled request log lives, a directory per UTC day."""
        return self.data_dir / "requests"

    @property
    def uploads_dir(self) -> Path:
        """Where upload jobs keep their quarantine files and copies of uploaded files."""
        return self.data_dir / "uploads"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment.

    Raises:
        InvalidValue: naming the ``ADTARGET_*`` variable that does not parse (not a pydantic
            traceback: the variable is what the operator has to fix).
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"ADTARGET_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']} "
            f"(got {e.get('input')!r})"
            for e in exc.errors()
        ]
        first = exc.errors()[0]["loc"]
        raise InvalidValue(
            "; ".join(problems), field=f"ADTARGET_{'_'.join(map(str, first)).upper()}"
        ) from None
