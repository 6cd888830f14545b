"""Fixtures of the decision tests that read a real catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog.db import make_engine, make_session_factory, migrate

from .redis_cluster import LocalRedisCluster, available


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


def _started_cluster() -> Iterator[LocalRedisCluster]:
    """Start a 3 + 3 cluster (skip the test when redis-server is missing), stop it after."""
    why = available()
    if why is not None:
        pytest.skip(why)
    cluster = LocalRedisCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A real Redis Cluster (3 masters + 3 replicas) on free loopback ports, for the session.

    Tests may write keys under their own ``redis_prefix``; none may kill its nodes (the
    failover test starts a cluster of its own).
    """
    yield from _started_cluster()


@pytest.fixture
def own_cluster() -> Iterator[LocalRedisCluster]:
    """A Redis Cluster of the test's own (3 + 3), for tests that kill or move its nodes."""
    yield from _started_cluster()
