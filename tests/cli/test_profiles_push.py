"""`adtarget profiles push` copies the current snapshot into a real Redis (decisions read it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adtarget.cli.main import app
from adtarget.decision.profiles_redis import RedisProfileStore
from adtarget.settings import get_settings

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[Path]:
    data = tmp_path / "data"
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(data))
    monkeypatch.setenv("ADTARGET_REDIS_URL", redis_url)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.redis
def test_push_copies_every_user_and_the_version(
    env: Path, redis_url: str, redis_prefix: str
) -> None:
    before = runner.invoke(app, ["profiles", "push", "--prefix", redis_prefix])
    assert before.exit_code == 1 and "no audience snapshot" in before.stderr
    users = env / "users.csv"
    users.write_text("user_id,country,genres\nu1,US,drama|scifi\nu2,CA,\nu3,,kids\n")
    schema = env / "schema.json"
    schema.write_text('{"country": "category", "genres": "set"}')
    ingested = runner.invoke(app, ["ingest", str(users), "--schema", str(schema), "--json"])
    assert ingested.exit_code == 0, ingested.output
    pushed = runner.invoke(app, ["profiles", "push", "--prefix", redis_prefix, "--json"])
    assert pushed.exit_code == 0, pushed.output
    result = json.loads(pushed.stdout)
    assert result["users"] == 3 and result["snapshot"] == "v000001"
    store = RedisProfileStore(redis_url, prefix=redis_prefix, timeout=1.0)
    assert store.version() == "v000001"
    got = {u: store.get(u) or {} for u in ("u1", "u2", "u3")}
    assert all(p.pop("__segments__", frozenset()) == frozenset() for p in got.values())
    assert got["u1"] == {"country": "US", "genres": frozenset({"drama", "scifi"})}
    assert got["u2"] == {"country": "CA"}
    assert got["u3"] == {"genres": frozenset({"kids"})}
    assert store.get("nobody") is None
    store.close()


@pytest.mark.redis
def test_with_redis_profiles_every_switch_reaches_redis_by_itself(
    env: Path, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADTARGET_PROFILE_STORE", "redis")
    monkeypatch.setenv("ADTARGET_REDIS_PROFILE_PREFIX", redis_prefix)
    get_settings.cache_clear()
    schema = env / "schema.json"
    schema.write_text('{"country": "category"}')
    first, second = env / "first.csv", env / "second.csv"
    first.write_text("user_id,country\nu1,US\nu2,FR\n")
    second.write_text("user_id,country\nu1,DE\n")  # replace mode: u2 leaves the population

    def live(user: str) -> tuple[dict[str, object] | None, str | None]:
        store = RedisProfileStore(redis_url, prefix=redis_prefix, timeout=1.0)
        try:
            found, version = store.lookup(user)
        finally:
            store.close()
        if found is not None:
            found.pop("__segments__", None)
        return found, version

    for path in (first, second):
        res = runner.invoke(app, ["ingest", str(path), "--schema", str(schema), "--json"])
        assert res.exit_code == 0, res.output
    assert live("u1") == ({"country": "DE"}, "v000002")
    assert live("u2") == (None, "v000002")  # gone from Redis too, not left stale
    undone = runner.invoke(app, ["undo"])
    assert undone.exit_code == 0, undone.output
    assert live("u2") == ({"country": "FR"}, "v000001")  # undo repoints Redis as well
    rolled = runner.invoke(app, ["snapshots", "rollback", "v000002"])
    assert rolled.exit_code == 0, rolled.output
    assert live("u1") == ({"country": "DE"}, "v000002")
