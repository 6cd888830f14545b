"""Migrations and engines: both backends migrate up, down and up again, matching tables.py."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from adtarget.catalog.db import (
    HEAD_REVISION,
    MIGRATIONS_DIR,
    _migrated,
    alembic_config,
    downgrade,
    make_engine,
    make_session_factory,
    migrate,
    normalize_url,
    open_catalog,
)
from adtarget.catalog.tables import AdFormat, Base
from adtarget.settings import Settings

TABLES = {
    "advertisers",
    "campaigns",
    "line_items",
    "ad_formats",
    "creatives",
    "line_item_creatives",
    "segments",
    "dimensions",
    "catalog_changes",
    "upload_jobs",
    "command_log",
    "api_keys",
}


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_migrations_up_down_up(catalog_url: str) -> None:
    migrate(catalog_url)
    migrate(catalog_url)  # idempotent
    eng = make_engine(catalog_url)
    try:
        assert _tables(eng) == TABLES
        downgrade(catalog_url)
        assert _tables(eng) == set()
        migrate(catalog_url)
        assert _tables(eng) == TABLES
        with eng.connect() as conn:
            formats = conn.execute(text("SELECT name FROM ad_formats ORDER BY name")).scalars()
            assert list(formats) == ["display_banner", "pause_ad", "video_15s", "video_30s"]
    finally:
        eng.dispose()


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_seeded_format_schemas_are_objects(engine: Engine) -> None:
    with make_session_factory(engine)() as s:
        formats = s.query(AdFormat).all()
        assert {f.media for f in formats} == {"video", "display"}
        for fmt in formats:
            assert fmt.json_schema["type"] == "object"
            assert fmt.added_at.tzinfo is not None


def test_sqlite_connections_get_pragmas(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    eng.dispose()


def test_in_memory_sqlite_shares_one_database() -> None:
    eng = make_engine("sqlite://")
    migrate("sqlite://", engine=eng)
    with make_session_factory(eng)() as s:
        assert s.query(AdFormat).count() == 4


def test_postgres_url_picks_psycopg3() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x") == "sqlite:///x"


def test_open_catalog_creates_dir_and_migrates(settings: Settings) -> None:
    assert not settings.data_dir.exists()
    factory = open_catalog(settings)
    assert (settings.data_dir / "catalog.sqlite3").exists()
    with factory() as s:
        assert s.query(AdFormat).count() == 4
    again = open_catalog(settings)  # second open: no error, same data
    with again() as s:
        assert s.query(AdFormat).count() == 4


def test_head_revision_constant_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == [HEAD_REVISION], f"update HEAD_REVISION for {MIGRATIONS_DIR}"


def test_open_catalog_migrates_a_database_behind_head(settings: Settings) -> None:
    url = settings.resolved_catalog_url
    settings.data_dir.mkdir(parents=True)
    migrate(url)
    downgrade(url, revision="base")  # an empty, un-migrated database file
    _migrated.discard(normalize_url(url))  # as in a new process: nothing cached
    with open_catalog(settings)() as s:
        assert s.query(AdFormat).count() == 4


def test_concurrent_migrations_do_not_collide(catalog_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(catalog_url)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    eng = make_engine(catalog_url)
    assert _tables(eng) == TABLES
    eng.dispose()


@pytest.mark.postgres
def test_postgres_uses_jsonb_and_timestamptz(pg_url: str) -> None:
    migrate(pg_url)
    eng = make_engine(pg_url)
    cols = {c["name"]: c for c in inspect(eng).get_columns("line_items")}
    assert str(cols["targeting_json"]["type"]) == "JSONB"
    assert cols["start"]["type"].timezone is True
    eng.dispose()


def test_concurrent_sqlite_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    from adtarget.catalog import service

    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    migrate(url)
    eng = make_engine(url)
    factory = make_session_factory(eng)
    with factory() as s:
        ids = [
            service.create(kind="advertiser", session=s, data={"name": f"a{i}"}).id
            for i in range(4)
        ]
        s.commit()
    errors: list[BaseException] = []

    def writer(adv_id: int) -> None:
        try:
            for n in range(15):
                with factory() as s:
                    service.get(kind="advertiser", session=s, obj_id=adv_id)
                    service.update(
                        kind="advertiser",
                        session=s,
                        obj_id=adv_id,
                        changes={"name": f"a{adv_id}-{n}"},
                    )
                    s.commit()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with factory() as s:
        assert {service.get(kind="advertiser", session=s, obj_id=i).version for i in ids} == {16}
    eng.dispose()
