"""A live ``adtarget serve`` on a free loopback port, with an admin key, for the client tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from serving import free_port, wait_until_serving

ADMIN_KEY = "client-test-admin-key"


@dataclass(frozen=True)
class Server:
    url: str
    data_dir: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("client") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADTARGET_")} | {
        "ADTARGET_DATA_DIR": str(data),
        "ADTARGET_ADMIN_KEY": ADMIN_KEY,
    }
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adtarget.cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, proc)
        yield Server(url, data, env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
