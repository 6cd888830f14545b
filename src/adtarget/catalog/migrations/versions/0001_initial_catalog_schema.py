"""initial catalog schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 09:06:34.614119
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from adtarget.catalog.coltypes import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here on purpose: later changes to tables.py must come with a new revision.
JSON_T = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = UTCDateTime()
CAP_CHECK = (
    "(frequency_cap_count IS NULL AND frequency_cap_window_seconds IS NULL) OR "
    "(frequency_cap_count IS NOT NULL AND frequency_cap_window_seconds IS NOT NULL "
    "AND frequency_cap_count > 0 AND frequency_cap_window_seconds > 0)"
)


def _video_schema(max_seconds: int) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "media_url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
            "duration": {"type": "number", "exclusiveMinimum": 0, "maximum": max_seconds},
            "resolution": {"enum": ["640x360", "1280x720", "1920x1080", "3840x2160"]},
            "mime_type": {"enum": ["video/mp4", "video/webm", "application/x-mpegURL"]},
            "bitrate_kbps": {"type": "integer", "minimum": 100, "maximum": 100000},
            "click_through_url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
            "skippable": {"type": "boolean"},
        },
    }


_IMAGE = {
    "image_url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
    "click_through_url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
    "alt_text": {"type": "string", "maxLength": 200},
}

SEED_FORMATS: list[dict[str, Any]] = [
    {
        "name": "video_15s",
        "media": "video",
        "description": "In-stream video of at most 15 seconds",
        "json_schema": _video_schema(15),
    },
    {
        "name": "video_30s",
        "media": "video",
        "description": "In-stream video of at most 30 seconds",
        "json_schema": _video_schema(30),
    },
    {
        "name": "pause_ad",
        "media": "display",
        "description": "Still image shown over paused content",
        "json_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                **_IMAGE,
                "resolution": {"enum": ["1280x720", "1920x1080", "3840x2160"]},
                "dismiss_after_seconds": {"type": "integer", "minimum": 1, "maximum": 600},
            },
        },
    },
    {
        "name": "display_banner",
        "media": "display",
        "description": "IAB-size display banner",
        "json_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                **_IMAGE,
                "size": {"enum": ["300x250", "728x90", "320x50", "160x600", "300x600"]},
            },
        },
    },
]


def upgrade() -> None:
    ad_formats = op.create_table(
        "ad_formats",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("media", sa.String(length=16), nullable=False),
        sa.Column("json_schema", JSON_T, nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ad_formats")),
    )
    op.create_table(
        "advertisers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("frequency_cap_count", sa.Integer(), nullable=True),
        sa.Column("frequency_cap_window_seconds", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'paused', 'archived')",
            name=op.f("ck_advertisers_status"),
        ),
        sa.CheckConstraint(
            CAP_CHECK,
            name=op.f("ck_advertisers_frequency_cap"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_advertisers")),
        sa.UniqueConstraint("name", name=op.f("uq_advertisers_name")),
    )
    op.create_table(
        "command_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("payload", JSON_T, nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("undone_at", TS, nullable=True),
        sa.CheckConstraint("state IN ('done', 'undone')", name=op.f("ck_command_log_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_log")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_command_log_actor_state_id", "command_log", ["actor", "state", "id"])

    op.create_table(
        "dimensions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("allowed_values", JSON_T, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'paused', 'archived')", name=op.f("ck_dimensions_status")
        ),
        sa.CheckConstraint(
            "type IN ('category', 'number', 'set', 'bool')", name=op.f("ck_dimensions_type")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dimensions")),
        sa.UniqueConstraint("name", name=op.f("uq_dimensions_name")),
    )
    op.create_table(
        "upload_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("segment", sa.String(length=200), nullable=True),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("file_checksum", sa.String(length=64), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("rows_read", sa.BigInteger(), nullable=False),
        sa.Column("rows_accepted", sa.BigInteger(), nullable=False),
        sa.Column("rows_rejected", sa.BigInteger(), nullable=False),
        sa.Column("quarantine_path", sa.Text(), nullable=True),
        sa.Column("snapshot", sa.String(length=64), nullable=True),
        sa.Column("previous_snapshot", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report", JSON_T, nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "mode IN ('replace', 'upsert', 'segment')", name=op.f("ck_upload_jobs_mode")
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')",
            name=op.f("ck_upload_jobs_status"),
        ),
        sa.CheckConstraint(
            "rows_read >= 0 AND rows_accepted >= 0 AND rows_rejected >= 0",
            name=op.f("ck_upload_jobs_row_counts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_jobs")),
    )
    op.create_index("ix_upload_jobs_file_checksum_mode", "upload_jobs", ["file_checksum", "mode"])
    op.create_index("ix_upload_jobs_status_created_at", "upload_jobs", ["status", "created_at"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("advertiser_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.CheckConstraint(
            "role <> 'advertiser' OR advertiser_id IS NOT NULL", name=op.f("ck_api_keys_advertiser")
        ),
        sa.CheckConstraint(
            "role IN ('admin', 'advertiser', 'reader', 'decisions')", name=op.f("ck_api_keys_role")
        ),
        sa.ForeignKeyConstraint(
            ["advertiser_id"],
            ["advertisers.id"],
            name=op.f("fk_api_keys_advertiser_id_advertisers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("advertiser_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("objective", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("budget_total", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("budget_daily", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("start", TS, nullable=False),
        sa.Column("end", TS, nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("dayparting", JSON_T, nullable=True),
        sa.Column("frequency_cap_count", sa.Integer(), nullable=True),
        sa.Column("frequency_cap_window_seconds", sa.Integer(), nullable=True),
        sa.Column("pacing_mode", sa.String(length=8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "objective IN ('awareness', 'reach', 'completion', 'clicks', 'conversions')",
            name=op.f("ck_campaigns_objective"),
        ),
        sa.CheckConstraint(
            "pacing_mode IN ('even', 'asap')", name=op.f("ck_campaigns_pacing_mode")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'paused', 'archived')", name=op.f("ck_campaigns_status")
        ),
        sa.CheckConstraint('"end" > start', name=op.f("ck_campaigns_flight")),
        sa.CheckConstraint(
            CAP_CHECK,
            name=op.f("ck_campaigns_frequency_cap"),
        ),
        sa.CheckConstraint(
            "budget_daily IS NULL OR (budget_daily >= 0 AND budget_daily <= budget_total)",
            name=op.f("ck_campaigns_budget_daily"),
        ),
        sa.CheckConstraint("budget_total >= 0", name=op.f("ck_campaigns_budget_total")),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_campaigns_currency")),
        sa.ForeignKeyConstraint(
            ["advertiser_id"],
            ["advertisers.id"],
            name=op.f("fk_campaigns_advertiser_id_advertisers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("advertiser_id", "name", name=op.f("uq_campaigns_advertiser_id_name")),
    )
    op.create_index("ix_campaigns_status_end", "campaigns", ["status", "end"])

    op.create_table(
        "creatives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("advertiser_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("format", sa.String(length=64), nullable=False),
        sa.Column("attributes", JSON_T, nullable=False),
        sa.Column("approval_status", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "approval_status IN ('pending', 'approved', 'rejected')",
            name=op.f("ck_creatives_approval_status"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'paused', 'archived')", name=op.f("ck_creatives_status")
        ),
        sa.ForeignKeyConstraint(
            ["advertiser_id"],
            ["advertisers.id"],
            name=op.f("fk_creatives_advertiser_id_advertisers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["format"],
            ["ad_formats.name"],
            name=op.f("fk_creatives_format_ad_formats"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_creatives")),
        sa.UniqueConstraint("advertiser_id", "name", name=op.f("uq_creatives_advertiser_id_name")),
    )
    op.create_index("ix_creatives_format", "creatives", ["format"])

    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("rule", sa.Text(), nullable=True),
        sa.Column("rule_json", JSON_T, nullable=True),
        sa.Column("advertiser_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=True),
        sa.Column("last_size", sa.BigInteger(), nullable=True),
        sa.Column("last_snapshot", sa.String(length=64), nullable=True),
        sa.Column("last_computed_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "kind <> 'rule' OR rule IS NOT NULL", name=op.f("ck_segments_rule_has_text")
        ),
        sa.CheckConstraint("kind IN ('rule', 'list')", name=op.f("ck_segments_kind")),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'paused', 'archived')", name=op.f("ck_segments_status")
        ),
        sa.CheckConstraint(
            "last_size IS NULL OR last_size >= 0", name=op.f("ck_segments_last_size")
        ),
        sa.CheckConstraint(
            "ttl_seconds IS NULL OR ttl_seconds > 0", name=op.f("ck_segments_ttl_seconds")
        ),
        sa.ForeignKeyConstraint(
            ["advertiser_id"],
            ["advertisers.id"],
            name=op.f("fk_segments_advertiser_id_advertisers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("name", name=op.f("uq_segments_name")),
    )
    op.create_index("ix_segments_advertiser_id", "segments", ["advertiser_id"])

    op.create_table(
        "line_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("bid_cpm", sa.Numeric(precision=12, scale=6), nullable=False),
        sa.Column("pacing_mode", sa.String(length=8), nullable=False),
        sa.Column("frequency_cap_count", sa.Integer(), nullable=True),
        sa.Column("frequency_cap_window_seconds", sa.Integer(), nullable=True),
        sa.Column("start", TS, nullable=True),
        sa.Column("end", TS, nullable=True),
        sa.Column("budget_total", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("targeting", sa.Text(), nullable=False),
        sa.Column("targeting_json", JSON_T, nullable=True),
        sa.Column("formats", JSON_T, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "pacing_mode IN ('even', 'asap')", name=op.f("ck_line_items_pacing_mode")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'paused', 'archived')", name=op.f("ck_line_items_status")
        ),
        sa.CheckConstraint(
            CAP_CHECK,
            name=op.f("ck_line_items_frequency_cap"),
        ),
        sa.CheckConstraint("bid_cpm >= 0", name=op.f("ck_line_items_bid_cpm")),
        sa.CheckConstraint(
            "budget_total IS NULL OR budget_total >= 0", name=op.f("ck_line_items_budget_total")
        ),
        sa.CheckConstraint("priority BETWEEN 1 AND 16", name=op.f("ck_line_items_priority")),
        sa.CheckConstraint(
            'start IS NULL OR "end" IS NULL OR "end" > start', name=op.f("ck_line_items_flight")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_line_items_campaign_id_campaigns"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_line_items")),
        sa.UniqueConstraint("campaign_id", "name", name=op.f("uq_line_items_campaign_id_name")),
    )
    op.create_index("ix_line_items_status_campaign_id", "line_items", ["status", "campaign_id"])

    op.create_table(
        "line_item_creatives",
        sa.Column("line_item_id", sa.Integer(), nullable=False),
        sa.Column("creative_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["creative_id"],
            ["creatives.id"],
            name=op.f("fk_line_item_creatives_creative_id_creatives"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["line_item_id"],
            ["line_items.id"],
            name=op.f("fk_line_item_creatives_line_item_id_line_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("line_item_id", "creative_id", name=op.f("pk_line_item_creatives")),
    )
    op.create_index("ix_line_item_creatives_creative_id", "line_item_creatives", ["creative_id"])

    added = datetime(2026, 1, 1, tzinfo=UTC)
    op.bulk_insert(ad_formats, [{**f, "added_at": added} for f in SEED_FORMATS])


def downgrade() -> None:
    op.drop_index("ix_line_item_creatives_creative_id", table_name="line_item_creatives")

    op.drop_table("line_item_creatives")
    op.drop_index("ix_line_items_status_campaign_id", table_name="line_items")

    op.drop_table("line_items")
    op.drop_index("ix_segments_advertiser_id", table_name="segments")

    op.drop_table("segments")
    op.drop_index("ix_creatives_format", table_name="creatives")

    op.drop_table("creatives")
    op.drop_index("ix_campaigns_status_end", table_name="campaigns")

    op.drop_table("campaigns")
    op.drop_table("api_keys")
    op.drop_index("ix_upload_jobs_status_created_at", table_name="upload_jobs")
    op.drop_index("ix_upload_jobs_file_checksum_mode", table_name="upload_jobs")

    op.drop_table("upload_jobs")
    op.drop_table("dimensions")
    op.drop_index("ix_command_log_actor_state_id", table_name="command_log")

    op.drop_table("command_log")
    op.drop_table("advertisers")
    op.drop_table("ad_formats")
