"""competitive category on advertisers and campaigns

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 22:00:00

Why a plain nullable column and no batch: both backends add (and, SQLite 3.35+, drop) a nullable
column in place. A SQLite batch would copy the table and lose the change-log triggers of 0002.
Ad pods keep two ads of one category (``"auto"``, ``"telecom"``) out of one break; a campaign's
category overrides its advertiser's (``decision/pods.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("advertisers", "campaigns")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("category", sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "category")
