"""The audience calls' catalog view: reused while nothing changed, reloaded after any commit."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from adtarget.api.audience_context import AudienceContextCache
from adtarget.api.auth import Principal
from adtarget.catalog.db import make_engine, make_session_factory, migrate
from adtarget.catalog.tables import Advertiser, Dimension, Segment

ADMIN = Principal(actor="t", role="admin")


def _catalog(url: str) -> sessionmaker[Session]:
    migrate(url)
    return make_session_factory(make_engine(url))


@pytest.fixture(params=["sqlite", "postgres"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> sessionmaker[Session]:
    if request.param == "sqlite":
        return _catalog(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    return _catalog(request.getfixturevalue("pg_url"))


def test_reused_until_a_commit_from_another_session(factory: sessionmaker[Session]) -> None:
    cache = AudienceContextCache(factory)
    try:
        assert cache.context(ADMIN)["registry"] == {}
        assert cache.context(ADMIN)["registry"] == {}
        assert cache.loads == 1
        with factory() as s, s.begin():  # a writer that is not the cache's: another process
            s.add(Dimension(name="age", type="number"))
            s.add(Segment(name="adults", kind="rule", rule="age >= 18"))
        ctx = cache.context(ADMIN)
        assert set(ctx["registry"]) == {"age"} and set(ctx["segments"]) == {"adults"}
        assert cache.loads == 2
        with factory() as s, s.begin():
            s.execute(update(Segment).where(Segment.name == "adults").values(status="archived"))
        assert cache.context(ADMIN)["segments"] == {}
        loads = cache.loads
        cache.context(ADMIN)
        assert cache.loads == loads
    finally:
        cache.close()


def test_hidden_segments_per_advertiser(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        a, b = Advertiser(name="a"), Advertiser(name="b")
        s.add_all([a, b])
        s.flush()
        s.add(Segment(name="mine", kind="list", advertiser_id=a.id))
        s.add(Segment(name="theirs", kind="list", advertiser_id=b.id, status="archived"))
        s.add(Segment(name="global", kind="list"))
        a_id = a.id
    cache = AudienceContextCache(factory)
    try:
        adv = cache.context(Principal(actor="k", role="advertiser", advertiser_id=a_id))
        assert adv["hidden"] == frozenset({"theirs"})
        assert set(adv["segments"]) == {"mine", "global"}
        admin = cache.context(ADMIN)
        assert admin["hidden"] == frozenset() and set(admin["segments"]) == {"mine", "global"}
    finally:
        cache.close()
