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
from adtarget.cli.demo import DEFAULT_USERS, DEMO_CAMPAIGN, DEMO_REQUESTS, _pause_earlier_runs
from adtarget.commands.catalog_commands import CatalogWriter
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

    assert "demo steps done in" in first and "'" not in first.split("6. Delivery")[1]
    assert re.search(r"spend \(USD\)", first) and "sci-fi fans in North America" in first

    second = _run_demo(data_dir)
    assert "nothing published twice" in second, second
    assert "paused 1 campaign(s) left active by an earlier demo run" in second

    factory = open_catalog(Settings(data_dir=data_dir))
    with factory() as session:
        campaigns = list(session.scalars(select(KINDS["campaign"].table)))
    assert [c.status for c in campaigns] == ["paused", "active"]
    assert all(float(c.budget_total) == 5000 for c in campaigns)


def test_pausing_earlier_runs_walks_every_page_and_only_demo_campaigns(tmp_path: Path) -> None:
    """More active campaigns than one page: every demo one is paused, one bounded bulk command
    per page, and a campaign that is not the demo's keeps serving."""
    factory = open_catalog(Settings(data_dir=tmp_path))
    writer = CatalogWriter(factory, actor="demo")
    adv = writer.create("advertiser", {"name": "a"})
    flight = {"start": "2026-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}
    names = [f"{DEMO_CAMPAIGN}{i}" for i in range(5)] + ["Spring sale"]
    ids = [
        writer.create(
            "campaign", {"advertiser_id": adv["id"], "name": n, "budget_total": 10, **flight}
        )["id"]
        for n in names
    ]
    draft = writer.create(
        "campaign",
        {"advertiser_id": adv["id"], "name": f"{DEMO_CAMPAIGN}draft", "budget_total": 10, **flight},
    )
    writer.bulk("campaign", ids, {"status": "active"})
    before = len(writer.history())

    assert _pause_earlier_runs(writer, factory, page_size=2) == 5
    with factory() as session:
        status = {c.name: c.status for c in session.scalars(select(KINDS["campaign"].table))}
    assert status == {
        **{n: "paused" for n in names[:5]},
        "Spring sale": "active",
        draft["name"]: "draft",
    }
    assert len(writer.history()) - before == 3  # pages of 2, 2 and 1 demo campaigns
    assert _pause_earlier_runs(writer, factory, page_size=2) == 0  # nothing left to pause


def test_the_readme_says_what_the_demo_does() -> None:
    """The README's figures are the demo's: its population, requests and time."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    users = re.search(r"population of ([\d,]+) users", readme)
    requests = re.search(r"answers (\d+) ad requests", readme)
    assert users and requests and "about three seconds" in readme
    assert int(users.group(1).replace(",", "")) == DEFAULT_USERS
    assert int(requests.group(1)) == DEMO_REQUESTS
