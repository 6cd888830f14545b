"""Catalog fixtures: every contract test runs on a fresh SQLite file and on real PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from adtarget.catalog import service
from adtarget.catalog.db import make_engine, make_session_factory, migrate


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalog database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session; tests copy it instead of migrating again."""
    path = tmp_path_factory.mktemp("catalog-template") / "catalog.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def engine(catalog_url: str, sqlite_template: Path) -> Iterator[Engine]:
    """A migrated catalog engine (test_db.py covers the migrations themselves on both)."""
    if catalog_url.startswith("sqlite:///"):
        shutil.copyfile(sqlite_template, catalog_url.removeprefix("sqlite:///"))
    else:
        migrate(catalog_url)
    eng = make_engine(catalog_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """One session; tests commit when they need a second session to see their rows."""
    with make_session_factory(engine)() as s:
        yield s
        s.rollback()


T0 = datetime(2026, 3, 1, tzinfo=UTC)
T1 = datetime(2026, 4, 1, tzinfo=UTC)


@pytest.fixture
def world(session: Session) -> dict[str, Any]:
    """An advertiser, a campaign, dimensions and a creative: the usual starting point."""
    adv = service.create(kind="advertiser", session=session, data={"name": "Acme"})
    camp = service.create(
        kind="campaign",
        session=session,
        data={
            "advertiser_id": adv.id,
            "name": "Spring",
            "budget_total": "1000.00",
            "budget_daily": "100",
            "start": T0,
            "end": T1,
        },
    )
    service.create(
        kind="dimension",
        session=session,
        data={"name": "country", "type": "category", "allowed_values": ["US", "CA", "FR"]},
    )
    service.create(kind="dimension", session=session, data={"name": "age", "type": "number"})
    service.create(kind="dimension", session=session, data={"name": "genres", "type": "set"})
    creative = service.create(
        kind="creative",
        session=session,
        data={
            "advertiser_id": adv.id,
            "name": "spot30",
            "format": "video_30s",
            "attributes": {"duration": 30, "resolution": "1920x1080"},
        },
    )
    session.commit()  # so a test's rollback after a refusal keeps the world
    return {"advertiser": adv, "campaign": camp, "creative": creative}
