"""The ads catalog schema: SQLAlchemy 2 typed declarative models, one class per table.

Table and column names are a contract for the commands, ingest, decision and API modules.
Why the keys and indexes look as they do is written down in ``docs/data-model.md``; the Alembic
migrations in ``catalog/migrations`` create exactly this schema (a test compares the two).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    declared_attr,
    mapped_column,
    relationship,
    synonym,
)

from adtarget.catalog.coltypes import JSONType, UTCDateTime, utcnow
from adtarget.catalog.status import APPROVAL_STATUSES, STATUSES, sql_in

#: Stable constraint names, so migrations can address them on PostgreSQL and in SQLite batches.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MONEY = Numeric(18, 6)  # 12 integer digits: up to 999 billion in any currency, exact
BID = Numeric(12, 6)  # CPM bids: up to 999,999 per mille
NAME = 200
CATEGORY = 64  # competitive category (ad pods keep two of one category apart)
PACING_MODES = ("even", "asap")
OBJECTIVES = ("awareness", "reach", "completion", "clicks", "conversions")
SEGMENT_KINDS = ("rule", "list")
DIMENSION_TYPES = ("category", "number", "set", "bool")
UPLOAD_STATUSES = ("queued", "running", "succeeded", "failed")
UPLOAD_MODES = ("replace", "upsert", "segment")
COMMAND_STATES = ("done", "undone")
API_ROLES = ("admin", "advertiser", "reader", "decisions")
CHANGE_KINDS = ("advertiser", "campaign", "line_item", "creative", "segment")


class Base(DeclarativeBase):
    """Declarative base of every catalog table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _status_check() -> CheckConstraint:
    return CheckConstraint(f"status IN ({sql_in(STATUSES)})", name="status")


def _cap_check() -> CheckConstraint:
    return CheckConstraint(
        "(frequency_cap_count IS NULL AND frequency_cap_window_seconds IS NULL) OR "
        "(frequency_cap_count IS NOT NULL AND frequency_cap_window_seconds IS NOT NULL "
        "AND frequency_cap_count > 0 AND frequency_cap_window_seconds > 0)",
        name="frequency_cap",
    )


class Versioned:
    """``version`` (optimistic concurrency, bumped by the ORM on every UPDATE) + timestamps."""

    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805 - SQLAlchemy directive
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class Advertiser(Versioned, Base):
    """A company buying ads; owns campaigns, creatives, list segments and API keys."""

    __tablename__ = "advertisers"
    __table_args__ = (_status_check(), _cap_check())

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    frequency_cap_count: Mapped[int | None] = mapped_column(Integer)
    frequency_cap_window_seconds: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str | None] = mapped_column(String(CATEGORY))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    campaigns: Mapped[list[Campaign]] = relationship(back_populates="advertiser", viewonly=True)


class Campaign(Versioned, Base):
    """A budget and a flight for one advertiser; line items spend it."""

    __tablename__ = "campaigns"
    __table_args__ = (
        UniqueConstraint("advertiser_id", "name"),
        Index("ix_campaigns_status_end", "status", "end"),
        _status_check(),
        _cap_check(),
        CheckConstraint(f"objective IN ({sql_in(OBJECTIVES)})", name="objective"),
        CheckConstraint(f"pacing_mode IN ({sql_in(PACING_MODES)})", name="pacing_mode"),
        CheckConstraint("length(currency) = 3", name="currency"),
        CheckConstraint("budget_total >= 0", name="budget_total"),
        CheckConstraint(
            "budget_daily IS NULL OR (budget_daily >= 0 AND budget_daily <= budget_total)",
            name="budget_daily",
        ),
        CheckConstraint('"end" > start', name="flight"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    advertiser_id: Mapped[int] = mapped_column(
        ForeignKey("advertisers.id", ondelete="RESTRICT"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(NAME), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    objective: Mapped[str] = mapped_column(String(16), nullable=False, default="awareness")
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="USD")
    budget_total: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    budget_daily: Mapped[Decimal | None] = mapped_column(MONEY)
    start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    dayparting: Mapped[dict[str, list[int]] | None] = mapped_column(JSONType)
    frequency_cap_count: Mapped[int | None] = mapped_column(Integer)
    frequency_cap_window_seconds: Mapped[int | None] = mapped_column(Integer)
    pacing_mode: Mapped[str] = mapped_column(String(8), nullable=False, default="even")
    category: Mapped[str | None] = mapped_column(String(CATEGORY))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    advertiser: Mapped[Advertiser] = relationship(back_populates="campaigns", viewonly=True)
    line_items: Mapped[list[LineItem]] = relationship(back_populates="campaign", viewonly=True)


class LineItem(Versioned, Base):
    """What to show to whom inside a campaign: targeting, priority, bid, caps, formats."""

    __tablename__ = "line_items"
    __table_args__ = (
        UniqueConstraint("campaign_id", "name"),
        Index("ix_line_items_status_campaign_id", "status", "campaign_id"),
        _status_check(),
        _cap_check(),
        CheckConstraint("priority BETWEEN 1 AND 16", name="priority"),
        CheckConstraint("bid_cpm >= 0", name="bid_cpm"),
        CheckConstraint(f"pacing_mode IN ({sql_in(PACING_MODES)})", name="pacing_mode"),
        CheckConstraint("budget_total IS NULL OR budget_total >= 0", name="budget_total"),
        CheckConstraint('start IS NULL OR "end" IS NULL OR "end" > start', name="flight"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="RESTRICT"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(NAME), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=8)
    bid_cpm: Mapped[Decimal] = mapped_column(BID, nullable=False)
    pacing_mode: Mapped[str] = mapped_column(String(8), nullable=False, default="even")
    frequency_cap_count: Mapped[int | None] = mapped_column(Integer)
    frequency_cap_window_seconds: Mapped[int | None] = mapped_column(Integer)
    start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    budget_total: Mapped[Decimal | None] = mapped_column(MONEY)
    targeting: Mapped[str] = mapped_column(Text, nullable=False, default="")
    targeting_json: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    formats: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    campaign: Mapped[Campaign] = relationship(back_populates="line_items", viewonly=True)
    creatives: Mapped[list[Creative]] = relationship(
        secondary="line_item_creatives", viewonly=True, order_by="Creative.id"
    )


class AdFormat(Base):
    """A registry row per ad type; its JSON Schema validates creatives' attributes."""

    __tablename__ = "ad_formats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    media: Mapped[str] = mapped_column(String(16), nullable=False)
    json_schema: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class Creative(Versioned, Base):
    """The ad itself (a video, a banner) in one format, with format-specific attributes."""

    __tablename__ = "creatives"
    __table_args__ = (
        UniqueConstraint("advertiser_id", "name"),
        Index("ix_creatives_format", "format"),
        _status_check(),
        CheckConstraint(
            f"approval_status IN ({sql_in(APPROVAL_STATUSES)})", name="approval_status"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    advertiser_id: Mapped[int] = mapped_column(
        ForeignKey("advertisers.id", ondelete="RESTRICT"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(NAME), nullable=False)
    format: Mapped[str] = mapped_column(
        ForeignKey("ad_formats.name", ondelete="RESTRICT"), nullable=False
    )
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    approval_status: Mapped[str] = mapped_column(String(16), nullable=False, default="approved")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class LineItemCreative(Base):
    """Which creatives a line item may show (many to many)."""

    __tablename__ = "line_item_creatives"
    __table_args__ = (Index("ix_line_item_creatives_creative_id", "creative_id"),)

    line_item_id: Mapped[int] = mapped_column(
        ForeignKey("line_items.id", ondelete="CASCADE"), primary_key=True
    )
    creative_id: Mapped[int] = mapped_column(
        ForeignKey("creatives.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class Segment(Versioned, Base):
    """A named audience: a rule over dimensions, or an uploaded list of user ids."""

    __tablename__ = "segments"
    __table_args__ = (
        _status_check(),
        CheckConstraint(f"kind IN ({sql_in(SEGMENT_KINDS)})", name="kind"),
        CheckConstraint("kind <> 'rule' OR rule IS NOT NULL", name="rule_has_text"),
        CheckConstraint("ttl_seconds IS NULL OR ttl_seconds > 0", name="ttl_seconds"),
        CheckConstraint("last_size IS NULL OR last_size >= 0", name="last_size"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    rule: Mapped[str | None] = mapped_column(Text)
    rule_json: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    advertiser_id: Mapped[int | None] = mapped_column(
        ForeignKey("advertisers.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    ttl_seconds: Mapped[int | None] = mapped_column(Integer)
    last_size: Mapped[int | None] = mapped_column(BigInteger)
    last_snapshot: Mapped[str | None] = mapped_column(String(64))
    last_computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class Dimension(Versioned, Base):
    """The registry of user dimensions rules may use (a row per dimension, no code change)."""

    __tablename__ = "dimensions"
    __table_args__ = (
        _status_check(),
        CheckConstraint(f"type IN ({sql_in(DIMENSION_TYPES)})", name="type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), nullable=False, unique=True)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    allowed_values: Mapped[list[str] | None] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_at = synonym("added_at")


class UploadJob(Base):
    """One bulk upload of user features: its progress, counts and the snapshot it published."""

    __tablename__ = "upload_jobs"
    __table_args__ = (
        Index("ix_upload_jobs_file_checksum_mode", "file_checksum", "mode"),
        Index("ix_upload_jobs_status_created_at", "status", "created_at"),
        CheckConstraint(f"status IN ({sql_in(UPLOAD_STATUSES)})", name="status"),
        CheckConstraint(f"mode IN ({sql_in(UPLOAD_MODES)})", name="mode"),
        CheckConstraint(
            "rows_read >= 0 AND rows_accepted >= 0 AND rows_rejected >= 0", name="row_counts"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    mode: Mapped[str] = mapped_column(String(16), nullable=False, default="replace")
    segment: Mapped[str | None] = mapped_column(String(NAME))
    source_path: Mapped[str] = mapped_column(Text, nullable=False)
    file_checksum: Mapped[str] = mapped_column(String(64), nullable=False)
    dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    rows_read: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rows_accepted: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rows_rejected: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    quarantine_path: Mapped[str | None] = mapped_column(Text)
    snapshot: Mapped[str | None] = mapped_column(String(64))
    previous_snapshot: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    actor: Mapped[str] = mapped_column(String(128), nullable=False, default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)


class CommandLog(Base):
    """The durable history of catalog commands per actor (undo/redo reads it newest first)."""

    __tablename__ = "command_log"
    __table_args__ = (
        Index("ix_command_log_actor_state_id", "actor", "state", "id"),
        CheckConstraint(f"state IN ({sql_in(COMMAND_STATES)})", name="state"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    state: Mapped[str] = mapped_column(String(8), nullable=False, default="done")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CatalogChange(Base):
    """One row per catalog row written, filled by database triggers (migration 0002), read by
    every decision process to patch its index: the change log behind ``catalog/changes.py``.

    Why triggers and not the command layer: every write counts, a raw ``UPDATE`` included,
    exactly as the index rebuild would see it. ``seq`` orders the log; ``kind`` and
    ``entity_id`` name the row (a creative link is logged as its line item).
    """

    __tablename__ = "catalog_changes"
    __table_args__ = (
        CheckConstraint(f"kind IN ({sql_in(CHANGE_KINDS)})", name="kind"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    entity_id: Mapped[int] = mapped_column(Integer, nullable=False)
    changed_at: Mapped[float] = mapped_column(Float, nullable=False)
    """Epoch seconds of the write (database clock): pruning and the propagation benchmark."""


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; the prefix lets people tell keys apart."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(f"role IN ({sql_in(API_ROLES)})", name="role"),
        CheckConstraint("role <> 'advertiser' OR advertiser_id IS NOT NULL", name="advertiser"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), nullable=False, default="")
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    advertiser_id: Mapped[int | None] = mapped_column(
        ForeignKey("advertisers.id", ondelete="RESTRICT")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
