"""Fixtures of the decision tests that read a real catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog.db import make_engine, make_session_factory, migrate


@pytest.fixture(params=["sqlite", "postgres"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> sessionmaker[Session]:
    """A migrated catalog on SQLite, and again on the real PostgreSQL (skipped if absent)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    migrate(url, engine=engine)
    return make_session_factory(engine)
