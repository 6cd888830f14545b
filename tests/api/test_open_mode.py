"""Open mode is decided once, at start: revoking every key never reopens the API."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from adtarget.api.app import create_app
from adtarget.api.auth import create_key
from adtarget.api.deps import app_key_resolver
from adtarget.catalog.db import open_catalog
from adtarget.settings import Settings


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_revoking_the_last_key_does_not_open_the_api(
    client: TestClient, make_key: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    key = make_key("admin")
    listed = client.get("/v1/keys", headers=bearer(key)).json()["keys"]
    assert client.delete(f"/v1/keys/{listed[0]['id']}", headers=bearer(key)).status_code == 200
    with caplog.at_level(logging.WARNING, logger="adtarget.api"):
        resp = client.post("/v1/keys", json={"role": "admin"})
        assert resp.status_code == 401, resp.text
        assert client.get("/v1/advertisers", headers=bearer("adt_anything")).status_code == 401
    assert "every API key is revoked" in caplog.text


def test_a_service_started_with_keys_never_opens(settings: Settings) -> None:
    """Started with a key (decided closed at start), then the key is deleted from the table."""
    app = create_app(settings)
    factory = open_catalog(settings)
    with factory() as session, session.begin():
        row, key = create_key(session=session, role="reader")
    with TestClient(app, raise_server_exceptions=False) as client:  # lifespan decides here
        assert client.get("/v1/advertisers", headers=bearer(key)).status_code == 200
        with factory() as session, session.begin():
            session.delete(session.merge(row))
        app_key_resolver(app).invalidate()
        assert client.get("/v1/advertisers").status_code == 401


def test_open_mode_can_be_forbidden_outright(
    settings: Settings, started: Callable[..., TestClient]
) -> None:
    """What ``adtarget serve`` hands its workers when it did not start open."""
    app = create_app(settings.model_copy(update={"allow_open": False}))
    client = started(app, raise_server_exceptions=False)
    assert client.get("/v1/advertisers").status_code == 401
