"""``adtarget demo``: the README's first command runs end to end, twice, on a fresh data dir."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from adtarget.catalog.db import open_catalog
from adtarget.catalog.kinds import KINDS
from adtarget.settings import Settings


def _run_demo(data_dir: Path) -> str:
    env = {**os.environ, "ADTARGET_DATA_DIR": str(data_dir), "COLUMNS": "120"}
    env.pop("ADTARGET_ADMIN_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "adtarget.cli.main", "demo", "--users", "3000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_demo_runs_twice_and_leaves_a_usable_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = _run_demo(data_dir)
    assert "succeeded" in first
    served = re.search(r"(\d+) ads served", first)
    assert served is not None and int(served.group(1)) > 0, first
    assert "budget is 5,000.00 again" in first
    assert (data_dir / "demo" / "report.png").stat().st_size > 10_000

    second = _run_demo(data_dir)
    assert "nothing published twice" in second, second
    assert "paused 1 campaign(s) left active by an earlier demo run" in second

    factory = open_catalog(Settings(data_dir=data_dir))
    with factory() as session:
        campaigns = list(session.scalars(select(KINDS["campaign"].table)))
    assert [c.status for c in campaigns] == ["paused", "active"]
    assert all(float(c.budget_total) == 5000 for c in campaigns)
