"""Setup and input mistakes end in one clear sentence, not an unrelated one."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from adtarget.api.app import create_app
from adtarget.audience.privacy import check_targetable
from adtarget.errors import InvalidValue
from adtarget.rules.parse import parse
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


def test_a_semicolon_csv_suggests_the_delimiter_that_reads_it(
    ingest: Runner, tmp_path: Path
) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_text("user_id;country\nu1;US\nu2;CA\n")
    job = ingest(semi)
    assert job["status"] == "failed"
    assert "the header looks ';'-separated: use --delimiter ';'" in job["error"]
    tab = tmp_path / "tab.csv"
    tab.write_text("user_id\tcountry\nu1\tUS\n")
    assert "use --delimiter '\\t'" in ingest(tab)["error"]
    other = tmp_path / "other.csv"
    other.write_text("uid,country\nu1,US\n")
    assert "--id-column" in ingest(other)["error"] and "--delimiter" not in ingest(other)["error"]
    fixed = ingest(semi, delimiter=";", schema={"country": "category"})
    assert fixed["status"] == "succeeded", fixed


def test_below_the_minimum_audience_size_names_the_setting() -> None:
    with pytest.raises(InvalidValue) as err:
        check_targetable(parse('segment("tiny")'), {"tiny": 3}, 100, field="targeting")
    assert "ADTARGET_MIN_AUDIENCE_SIZE" in err.value.message and "tiny" in err.value.message
