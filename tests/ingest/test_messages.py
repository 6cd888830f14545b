"""Setup and input mistakes end in one clear sentence, not an unrelated one."""

from __future__ import annotations

import warnings
from pathlib import Path

from adtarget.api.app import create_app
from adtarget.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from .conftest import Runner


def test_jsonl_lines_that_are_not_objects_say_so(ingest: Runner, tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text('["u1", "US"]\n["u2", "CA"]\n7\n')
    job = ingest(path)
    assert job["status"] == "failed"
    assert "no line is a JSON object" in job["error"] and "columns: )" not in job["error"]


def test_creating_in_a_status_names_creation_not_a_change(settings: Settings) -> None:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        resp = client.post("/v1/advertisers", json={"name": "a", "status": "draft"})
    assert resp.status_code == 422, resp.text
    message = resp.json()["error"]["message"]
    assert "cannot be created with status 'draft'" in message and "from 'active'" not in message
    assert resp.json()["error"]["field"] == "status"
