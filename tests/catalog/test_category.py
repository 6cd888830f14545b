"""Migration 0003: the competitive ``category`` column on advertisers and campaigns."""

from __future__ import annotations

from sqlalchemy import inspect, text

from adtarget.catalog.db import downgrade, make_engine, migrate


def _columns(url: str, table: str) -> set[str]:
    eng = make_engine(url)
    try:
        return {c["name"] for c in inspect(eng).get_columns(table)}
    finally:
        eng.dispose()


def test_migration_0003_adds_and_drops_category_keeping_rows_and_triggers(
    catalog_url: str,
) -> None:
    migrate(catalog_url, revision="0002")
    eng = make_engine(catalog_url)
    try:
        with eng.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO advertisers (id, name, status, created_at, version, updated_at) "
                    "VALUES (1, 'Acme', 'active', CURRENT_TIMESTAMP, 1, CURRENT_TIMESTAMP)"
                )
            )
        assert "category" not in _columns(catalog_url, "advertisers")
        migrate(catalog_url)
        assert "category" in _columns(catalog_url, "advertisers")
        assert "category" in _columns(catalog_url, "campaigns")
        with eng.begin() as conn:
            assert conn.execute(text("SELECT category FROM advertisers")).scalar() is None
            before = conn.execute(text("SELECT count(*) FROM catalog_changes")).scalar()
            conn.execute(text("UPDATE advertisers SET category = 'auto' WHERE id = 1"))
            after = conn.execute(text("SELECT count(*) FROM catalog_changes")).scalar()
        assert after == (before or 0) + 1  # the change-log trigger survived the migration
        downgrade(catalog_url, revision="0002")
        assert "category" not in _columns(catalog_url, "advertisers")
        with eng.begin() as conn:
            assert conn.execute(text("SELECT name FROM advertisers")).scalar() == "Acme"
            conn.execute(text("UPDATE advertisers SET name = 'Acme 2' WHERE id = 1"))
            assert conn.execute(text("SELECT count(*) FROM catalog_changes")).scalar() == after + 1
    finally:
        eng.dispose()
