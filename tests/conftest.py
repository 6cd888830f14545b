"""Shared fixtures: a temp data dir; real PostgreSQL / Redis that skip with a reason if absent.

PostgreSQL: each test session gets a fresh database (``adtarget_t_<random>``) on
127.0.0.1:5432, dropped at the end, so parallel runs never see each other's rows.
Redis: each test gets a unique key prefix; tests must namespace their keys with it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adtarget.settings import Settings

# One test process builds hundreds of apps; gc.freeze after each index rebuild would pin every
# finished test's cyclic garbage (tests/decision/test_index_holder_gc.py covers the freeze).
os.environ.setdefault("ADTARGET_INDEX_FREEZE_GC", "false")

PG_HOST = os.environ.get("ADTARGET_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ADTARGET_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ADTARGET_TEST_PG_USER", "postgres")
REDIS_HOST = os.environ.get("ADTARGET_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("ADTARGET_TEST_REDIS_PORT", "6379"))


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings pointing at a fresh data dir (SQLite catalog, Parquet events) under tmp_path."""
    return Settings(data_dir=tmp_path / "data", actor="tester")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; skips when the server is absent."""
    if not _port_open(PG_HOST, PG_PORT):
        pytest.skip(f"PostgreSQL not answering on {PG_HOST}:{PG_PORT}")
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the dev extra installs it
        pytest.skip("psycopg not installed (pip install 'adtarget[postgres]')")
    name = f"adtarget_t_{uuid.uuid4().hex[:12]}"
    admin = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty schema-level database per test: dropped and recreated schema ``public``."""
    import psycopg

    plain = pg_server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    yield pg_server_url


@pytest.fixture
def redis_url() -> str:
    """The Redis URL on loopback; skips when Redis is absent."""
    if not _port_open(REDIS_HOST, REDIS_PORT):
        pytest.skip(f"Redis not answering on {REDIS_HOST}:{REDIS_PORT}")
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix so concurrent tests never share Redis keys; its keys go after."""
    prefix = f"adtarget-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    if not _port_open(REDIS_HOST, REDIS_PORT):
        return
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@pytest.fixture
def started() -> Iterator[Callable[..., Any]]:
    """``started(app, **client_kwargs)``: a ``TestClient`` with the app's lifespan run (its
    container built, as in a served worker); every started app is shut down after the test."""
    import warnings
    from contextlib import ExitStack

    with warnings.catch_warnings():  # starlette's note about httpx2; the client works as is
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    with ExitStack() as stack:

        def start(app: Any, **kwargs: Any) -> Any:
            return stack.enter_context(TestClient(app, **kwargs))

        yield start
