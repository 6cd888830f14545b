"""The path docs/scaling.md gives, as a user runs it: ``adtarget ray-cluster`` (3 nodes on
loopback), a Ray upload with ``--shards``, a size through the shard actors, then Ctrl-C stops
every process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from tests.audience.conftest import population, to_batch

pytestmark = pytest.mark.slow
ADTARGET = [sys.executable, "-m", "adtarget.cli.main"]


def test_ray_cluster_command_ingest_and_size(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "users.parquet"
    pq.write_table(pa.Table.from_batches([to_batch(population(300, seed=9))]), src)
    env = dict(os.environ, ADTARGET_DATA_DIR=str(tmp_path / "data"))
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "cluster.txt"
    with out.open("w") as fh:
        proc = subprocess.Popen([*ADTARGET, "ray-cluster", "--nodes", "3"], stdout=fh, env=env)
    try:
        deadline = time.monotonic() + 90
        while "ADTARGET_RAY_ADDRESS=" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.5)
        for line in out.read_text().splitlines():
            if line.strip().startswith("export "):
                key, _, value = line.strip()[len("export ") :].partition("=")
                env[key] = value
        assert env["ADTARGET_RAY_ADDRESS"].startswith("127.0.0.1:")
        schema = json.dumps({"country": "category", "age": "number", "premium": "bool"})
        (tmp_path / "schema.json").write_text(schema)
        up = subprocess.run(
            [*ADTARGET, "ingest", str(src), "--shards", "3", "--engine", "ray", "--json"]
            + ["--schema", str(tmp_path / "schema.json")],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert up.returncode == 0, up.stderr[-2000:]
        assert json.loads(up.stdout)["shards"] == 3
        local = subprocess.run(
            [*ADTARGET, "size", "premium = true", "--json"], env=env, capture_output=True, text=True
        )
        env["ADTARGET_AUDIENCE_BACKEND"] = "ray"
        via_ray = subprocess.run(
            [*ADTARGET, "size", "premium = true", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert via_ray.returncode == 0, via_ray.stderr[-2000:]
        assert json.loads(via_ray.stdout) == json.loads(local.stdout)
        assert json.loads(via_ray.stdout)["shards"] == 3
    finally:
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        _, alive = psutil.wait_procs(children, timeout=30)
        for p in alive:
            p.kill()
    assert "ray cluster stopped" in out.read_text()
    assert not alive, [p.pid for p in alive]
