"""``s3://`` for ingest, export and events import, against moto's S3 server on loopback.

Why a real server: the bug was the URI itself (``Path("s3://b/k")`` is ``s3:/b/k``), and the
S3 client's endpoint, credentials and streaming are what must work; a mocked filesystem would
prove none of it. moto's ``ThreadedMotoServer`` speaks the S3 HTTP API on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from adtarget.cli.main import app
from adtarget.objectstore import is_uri, resolve
from adtarget.settings import get_settings

moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
boto3 = pytest.importorskip("boto3", reason="boto3 comes with moto[server]")

runner = CliRunner()
BUCKET = "adtarget-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port for this module."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """A fresh bucket; the AWS environment points the product (and boto3) at the server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ADTARGET_ACTOR", "s3-test")
    get_settings.cache_clear()
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)
    get_settings.cache_clear()


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _population(n: int) -> pa.Table:
    return pa.table(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "country": ["US" if i % 3 else "CA" for i in range(n)],
            "age": [18 + i % 50 for i in range(n)],
        }
    )


def _invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_uri_resolution_keeps_the_scheme() -> None:
    assert is_uri("s3://b/x.parquet") and not is_uri("data/x.parquet")
    assert not is_uri("file:///tmp/x.csv")
    assert resolve("file:///tmp/x.csv").local == Path("/tmp/x.csv")
    assert resolve("data/x.csv").local == Path("data/x.csv")


def test_ingest_parquet_and_csv_from_s3_then_export_to_s3(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="in/pop.parquet", Body=_parquet_bytes(_population(300)))
    res = _invoke("ingest", f"s3://{BUCKET}/in/pop.parquet", "--json")
    assert res.exit_code == 0, res.output
    job = json.loads(res.stdout)
    assert job["status"] == "succeeded" and job["rows_accepted"] == 300
    assert job["source_path"] == f"s3://{BUCKET}/in/pop.parquet"

    csv_body = "user_id,country,age\n" + "".join(f"v{i},DE,{20 + i % 9}\n" for i in range(250))
    s3.put_object(Bucket=BUCKET, Key="in/more.csv", Body=csv_body.encode())
    res = _invoke("ingest", f"s3://{BUCKET}/in/more.csv", "--mode", "upsert", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows_accepted"] == 250

    res = _invoke(
        "export", "country = 'DE'", "--out", f"s3://{BUCKET}/out/de.parquet", "--format",
        "parquet", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["count"] == 250
    body = s3.get_object(Bucket=BUCKET, Key="out/de.parquet")["Body"].read()
    ids = pq.read_table(io.BytesIO(body)).column("user_id").to_pylist()
    assert sorted(ids) == sorted(f"v{i}" for i in range(250))

    res = _invoke("export", "country = 'US'", "--out", f"s3://{BUCKET}/out/us.csv")
    assert res.exit_code == 0, res.output
    body = s3.get_object(Bucket=BUCKET, Key="out/us.csv")["Body"].read()
    us = pacsv.read_csv(io.BytesIO(body)).column("user_id").to_pylist()
    assert sorted(us) == sorted(f"u{i}" for i in range(300) if i % 3)


def test_events_import_from_s3(s3: Any) -> None:
    events = [
        {
            "event_id": f"e{i}",
            "type": "impression",
            "ts": "2026-12-01T10:00:00Z",
            "user_id": f"u{i % 7}",
            "line_item_id": "li1",
            "campaign_id": "c1",
            "advertiser_id": "a1",
            "creative_id": "cr1",
            "cost": 0.01,
        }
        for i in range(40)
    ]
    body = "\n".join(json.dumps(e) for e in events + events[:5]) + "\n"
    s3.put_object(Bucket=BUCKET, Key="ev/day.ndjson", Body=body.encode())
    uri = f"s3://{BUCKET}/ev/day.ndjson"
    res = _invoke("events", "import", uri, "--no-catalog", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["file"], out["accepted"], out["duplicates"]) == (uri, 40, 5)

    s3.put_object(Bucket=BUCKET, Key="ev/more.parquet", Body=_parquet_bytes(pa.Table.from_pylist(
        [{**e, "event_id": f"p{i}"} for i, e in enumerate(events[:10])]
    )))  # fmt: skip
    res = _invoke("events", "import", f"s3://{BUCKET}/ev/more.parquet", "--no-catalog", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accepted"] == 10


@pytest.mark.parametrize(
    "args",
    [
        ("ingest", "s3://{b}/nope/missing.parquet"),
        ("events", "import", "s3://{b}/nope/missing.ndjson", "--no-catalog"),
        ("ingest", "s3://no-such-bucket-adtarget/x.csv"),
    ],
)
def test_a_missing_object_is_named_without_a_traceback(s3: Any, args: tuple[str, ...]) -> None:
    argv = [a.format(b=BUCKET) for a in args]
    uri = next(a for a in argv if a.startswith("s3://"))
    res = _invoke(*argv)
    assert res.exit_code != 0
    assert isinstance(res.exception, SystemExit), res.exception  # typer.Exit, not a crash
    assert uri in res.stderr and "does not exist" in res.stderr
    assert "Traceback" not in res.output


def test_api_upload_of_a_server_path_on_s3(s3: Any, tmp_path: Path) -> None:
    import warnings

    from adtarget.api.app import create_app
    from adtarget.settings import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    s3.put_object(Bucket=BUCKET, Key="api/pop.parquet", Body=_parquet_bytes(_population(120)))
    settings = Settings(data_dir=tmp_path / "api", admin_key="root-key", actor="api-test")
    admin = {"Authorization": "Bearer root-key"}
    with TestClient(create_app(settings)) as client:
        uri = f"s3://{BUCKET}/api/pop.parquet"
        res = client.post("/v1/uploads", headers=admin, json={"path": uri, "mode": "replace"})
        assert res.status_code == 202, res.text
        deadline = time.monotonic() + 30
        job = res.json()
        while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.05)
            job = client.get(f"/v1/uploads/{job['id']}", headers=admin).json()
        assert job["status"] == "succeeded", job["error"]
        assert (job["rows_accepted"], job["source_path"]) == (120, uri)

        missing = f"s3://{BUCKET}/api/missing.csv"
        res = client.post("/v1/uploads", headers=admin, json={"path": missing, "mode": "replace"})
        assert 400 <= res.status_code < 500
        assert missing in res.text and res.json()["error"]["field"] == "path"
