"""Setup mistakes end in one line saying what is wrong and what to do, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ADTARGET = Path(sys.executable).with_name("adtarget")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("env", "file_dir", "says"),
    [
        ({}, True, "is a file, not a directory"),
        ({"ADTARGET_CATALOG_URL": "mysql://u@127.0.0.1/db"}, False, "cannot use a 'mysql'"),
        (
            {"ADTARGET_CATALOG_URL": f"postgresql://postgres@127.0.0.1:{_free_port()}/db"},
            False,
            "cannot reach the catalog",
        ),
    ],
    ids=["data-dir-is-a-file", "unsupported-scheme", "unreachable-catalog"],
)
def test_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], file_dir: bool, says: str
) -> None:
    if not ADTARGET.exists():
        pytest.skip(f"{ADTARGET} is not installed (pip install -e .)")
    data = tmp_path / "data"
    if file_dir:
        data.write_text("not a directory")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ADTARGET_")}
    proc = subprocess.run(
        [str(ADTARGET), "--data-dir", str(data), "keys", "list"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], proc.stderr
