"""Catalog fixtures for the command tests: a migrated catalog on SQLite, or on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog.db import make_engine, make_session_factory, migrate
from adtarget.catalog.row_store import TABLES, dump_table
from adtarget.commands.catalog_commands import CatalogWriter
from adtarget.settings import Settings

Factory = sessionmaker[Session]


def open_factory(url: str) -> tuple[Engine, Factory]:
    """Migrate ``url`` and return an engine + session factory on it."""
    engine = make_engine(url)
    migrate(url, engine=engine)
    return engine, make_session_factory(engine)


@pytest.fixture
def sqlite_url(settings: Settings) -> str:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.resolved_catalog_url


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest, settings: Settings) -> str:
    """The catalog URL, once per backend (PostgreSQL skips when the server is absent)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.resolved_catalog_url


@pytest.fixture
def sqlite_factory(sqlite_url: str) -> Iterator[Factory]:
    """A migrated SQLite catalog's session factory."""
    engine, fac = open_factory(sqlite_url)
    yield fac
    engine.dispose()


@pytest.fixture
def factory(catalog_url: str) -> Iterator[Factory]:
    """A migrated catalog's session factory, once on SQLite and once on PostgreSQL."""
    engine, fac = open_factory(catalog_url)
    yield fac
    engine.dispose()


@pytest.fixture
def pg_factory(pg_url: str) -> Iterator[Factory]:
    """A migrated catalog on the real PostgreSQL (skips when the server is absent)."""
    engine, fac = open_factory(pg_url)
    yield fac
    engine.dispose()


@pytest.fixture
def writer_for(factory: Factory) -> Callable[..., CatalogWriter]:
    """``writer_for("alice")`` → a CatalogWriter for that actor on the SQLite catalog."""

    def make(actor: str = "alice", depth: int = 200) -> CatalogWriter:
        return CatalogWriter(factory, actor=actor, depth=depth)

    return make


def dump(fac: Factory, *, ignore: frozenset[str] = frozenset()) -> dict[str, list[dict[str, Any]]]:
    """Every catalog table the commands touch, as rows of JSON values minus ``ignore``d columns."""
    with fac() as session:
        return {
            kind: [
                {k: v for k, v in row.items() if k not in ignore}
                for row in dump_table(session, kind)
            ]
            for kind in sorted(TABLES)
        }


CAMPAIGN = {
    "name": "Spring",
    "budget_total": "1000.50",
    "start": "2026-03-01T00:00:00+00:00",
    "end": "2026-06-01T00:00:00+00:00",
}


def seed(writer: CatalogWriter) -> dict[str, int]:
    """An advertiser, campaign, line item and creative created through ``writer``."""
    adv = writer.create("advertiser", {"name": "Acme"})
    camp = writer.create("campaign", {**CAMPAIGN, "advertiser_id": adv["id"]})
    li = writer.create(
        "line_item",
        {"campaign_id": camp["id"], "name": "LI-1", "bid_cpm": "12.5", "priority": 4},
    )
    cr = writer.create(
        "creative",
        {
            "advertiser_id": adv["id"],
            "name": "spot",
            "format": "video_15s",
            "attributes": {"media_url": "https://cdn.example/a.mp4", "duration": 15},
        },
    )
    return {
        "advertiser": adv["id"],
        "campaign": camp["id"],
        "line_item": li["id"],
        "creative": cr["id"],
    }
