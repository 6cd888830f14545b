"""catalog change log: a table filled by triggers, announced with NOTIFY on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 13:20:00

Why triggers: every decision process patches its index from this log (``catalog/changes.py``),
so every write must land in it, including writes that bypass the command layer. On PostgreSQL a
statement-level trigger also sends ``NOTIFY adtarget_catalog`` with an empty payload: identical
notifications of one transaction are folded, so a committed change is announced once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here on purpose (catalog/changes.py CHANNEL names the same channel).
CHANNEL = "adtarget_catalog"
#: table -> (change kind, id column)
LOGGED = {
    "advertisers": ("advertiser", "id"),
    "campaigns": ("campaign", "id"),
    "line_items": ("line_item", "id"),
    "creatives": ("creative", "id"),
    "line_item_creatives": ("line_item", "line_item_id"),
    "segments": ("segment", "id"),
}
KINDS = ("advertiser", "campaign", "line_item", "creative", "segment")

PG_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION adtarget_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_id integer;
    new_id integer;
    at double precision := extract(epoch FROM clock_timestamp());
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_id := (to_jsonb(OLD) ->> TG_ARGV[1])::integer;
        INSERT INTO catalog_changes (kind, entity_id, changed_at) VALUES (TG_ARGV[0], old_id, at);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_id := (to_jsonb(NEW) ->> TG_ARGV[1])::integer;
        IF old_id IS DISTINCT FROM new_id THEN
            INSERT INTO catalog_changes (kind, entity_id, changed_at)
            VALUES (TG_ARGV[0], new_id, at);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION adtarget_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END $$;
"""

SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def _pg_triggers() -> list[str]:
    out = []
    for table, (kind, col) in LOGGED.items():
        out.append(
            f"CREATE TRIGGER {table}_log_change AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION adtarget_log_change('{kind}', '{col}')"
        )
        out.append(
            f"CREATE TRIGGER {table}_notify_change AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION adtarget_notify_change()"
        )
    return out


def _sqlite_triggers() -> list[str]:
    out = []
    select = "INSERT INTO catalog_changes (kind, entity_id, changed_at)"
    insert = select + " VALUES"
    for table, (kind, col) in LOGGED.items():
        out.append(
            f"CREATE TRIGGER {table}_log_insert AFTER INSERT ON {table} BEGIN "
            f"{insert} ('{kind}', NEW.{col}, {SQLITE_NOW}); END"
        )
        out.append(
            f"CREATE TRIGGER {table}_log_delete AFTER DELETE ON {table} BEGIN "
            f"{insert} ('{kind}', OLD.{col}, {SQLITE_NOW}); END"
        )
        out.append(
            f"CREATE TRIGGER {table}_log_update AFTER UPDATE ON {table} BEGIN "
            f"{insert} ('{kind}', OLD.{col}, {SQLITE_NOW}); "
            f"{select} SELECT '{kind}', NEW.{col}, {SQLITE_NOW} WHERE NEW.{col} IS NOT OLD.{col}; "
            "END"
        )
    return out


def upgrade() -> None:
    op.create_table(
        "catalog_changes",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in KINDS) + ")",
            name=op.f("ck_catalog_changes_kind"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_catalog_changes")),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTIONS)
        for statement in _pg_triggers():
            op.execute(statement)
    else:
        for statement in _sqlite_triggers():
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in LOGGED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_log_change ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_notify_change ON {table}")
        op.execute("DROP FUNCTION IF EXISTS adtarget_log_change()")
        op.execute("DROP FUNCTION IF EXISTS adtarget_notify_change()")
    else:
        for table in LOGGED:
            for op_name in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_log_{op_name}")
    op.drop_table("catalog_changes")
