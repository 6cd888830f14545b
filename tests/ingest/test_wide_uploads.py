"""Wide uploads cannot exhaust file handles: the service keeps sizing whatever an upload does.

The review's case: a 10,000-column CSV left 19,458 of 20,000 descriptors in use (each dimension
held ~4 for every open snapshot, and a failed build's were never released); after that every
sizing request was a 500 until a restart. Here a real app runs in a child process whose
descriptor limit is lowered to 256, so the old layout (3 descriptors per category dimension)
fails with 300 columns, where the cause is now gone: a snapshot keeps no descriptor open.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import json, os, resource, sys, time, warnings
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    from adtarget.api.app import create_app
    from adtarget.settings import Settings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    tmp = Path(sys.argv[1])
    ADMIN = {"Authorization": "Bearer root"}

    def parquet(name, cols, rows=200, prefix="c"):
        data = {"user_id": [f"u{i}" for i in range(rows)]}
        data.update({f"{prefix}{j}": ["a"] * rows for j in range(cols)})
        path = tmp / name
        pq.write_table(pa.table(data), path)
        return path

    def upload(client, path, mode="replace"):
        with path.open("rb") as fh:
            return client.post("/v1/uploads", headers=ADMIN, data={"mode": mode},
                               files={"file": (path.name, fh.read(), "application/octet-stream")})

    def wait(client, job_id):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = client.get(f"/v1/uploads/{job_id}", headers=ADMIN).json()
            if job["status"] in ("succeeded", "failed"):
                return job
            time.sleep(0.05)
        raise SystemExit("job did not finish")

    def fds():
        return len(os.listdir("/proc/self/fd"))

    def size(client):
        res = client.post("/v1/audiences/size", headers=ADMIN, json={"rule": 'c0 = "a"'})
        return res.status_code, res.json().get("count")

    out = {}
    settings = Settings(data_dir=tmp / "data", admin_key="root", ingest_max_dimensions=400)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        res = upload(client, parquet("wide.parquet", 300))
        job = wait(client, res.json()["id"])
        out["wide"] = [job["status"], job["error"]]
        out["size_after_wide"] = size(client)
        out["fds_after_wide"] = fds()
        too = upload(client, parquet("too-wide.parquet", 401))
        out["too_wide"] = [too.status_code, too.json()]
        res = upload(client, parquet("grow.parquet", 150, prefix="g"), mode="upsert")
        job = wait(client, res.json()["id"])
        out["grow"] = [job["status"], job["error"]]
        out["size_after_failures"] = size(client)
        out["fds_after_failures"] = fds()
        ready = client.get("/readyz", headers=ADMIN)
        out["readyz"] = ready.status_code
    print(json.dumps(out))
    """
)


def test_wide_uploads_keep_no_descriptors_and_a_too_wide_one_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["wide"] == ["succeeded", None], out["wide"]
    assert out["size_after_wide"] == [200, 200]
    assert out["fds_after_wide"] < 100, "descriptors must not grow with dimensions"
    status, body = out["too_wide"]
    assert status == 422
    assert body["error"]["field"] == "columns"
    assert "too-wide.parquet" in body["error"]["message"]
    assert "401" in body["error"]["message"] and "400" in body["error"]["message"]
    state, error = out["grow"]
    assert state == "failed" and "450 dimension columns" in error, error
    assert out["size_after_failures"] == [200, 200]  # the previous snapshot keeps serving
    assert out["fds_after_failures"] <= out["fds_after_wide"] + 5
    assert out["readyz"] == 200
