"""``docs/getting-started.md`` run exactly as written, block by block, in an empty directory.

The page's YAML block becomes ``catalog.yaml``; its shell blocks run in one bash session (their
``export`` lines carry over), except the install lines (this interpreter has the package) and
``adtarget serve``, which starts a real server on a free loopback port (the page's
``127.0.0.1:8000`` is rewritten to it); its Python block runs as a script. Every line of a
``text`` block must be in the output of the block before it, so the page cannot drift.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving import free_port, wait_until_serving

PAGE = Path(__file__).parents[2] / "docs" / "getting-started.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def _norm(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serve(line: str, cwd: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    args = shlex.split(line.split("#", 1)[0])
    assert args[:2] == ["adtarget", "serve"], line
    proc = subprocess.Popen(
        [sys.executable, "-m", "adtarget.cli.main", *args[1:], "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_until_serving(f"http://127.0.0.1:{port}", proc)
    return proc


def _env_after(state: Path) -> dict[str, str]:
    raw = state.with_suffix(".env").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_the_getting_started_page_runs_as_written(
    tmp_path: Path, servers: list[subprocess.Popen[bytes]]
) -> None:
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    kinds = [k for k, _ in blocks]
    assert kinds.count("yaml") == 1 and kinds.count("python") == 1 and "text" in kinds
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADTARGET_")} | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "100",
        "TERM": "dumb",
    }
    state = tmp_path / "state.sh"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    last = ""
    ran: list[str] = []
    for kind, body in blocks:
        if kind == "yaml":
            (tmp_path / "catalog.yaml").write_text(body, encoding="utf-8")
        elif kind == "bash":
            lines = [
                ln
                for ln in body.splitlines()
                if ln.strip() and "pip install" not in ln and not ln.startswith("source ")
            ]
            if not lines:
                continue
            if lines[0].startswith("adtarget serve"):
                servers.append(_serve(lines[0], tmp_path, env | _env_after(state), port))
                ran.append("serve")
                continue
            script = "\n".join(
                [
                    "set -euo pipefail",
                    f"[ -f {state} ] && source {state}",
                    *lines,
                    f"export -p > {state}",
                    f"env -0 > {state.with_suffix('.env')}",
                ]
            )
            done = subprocess.run(
                ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=180,
            )  # fmt: skip
            assert done.returncode == 0, f"{lines}\n{done.stdout}\n{done.stderr}"
            last = done.stdout + done.stderr
            ran.append(lines[0])
        elif kind == "python":
            code = body.replace("http://127.0.0.1:8000", url)
            for attempt in (1, 2):  # the page says a second run only finds duplicates
                done = subprocess.run(
                    [sys.executable, "-c", code], cwd=tmp_path, env=env | _env_after(state),
                    capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
                if attempt == 1:
                    last = done.stdout
            assert "accepted 0, duplicates 3" in done.stdout
            assert done.stdout.splitlines()[1:] == last.splitlines()[1:]  # the same report
            ran.append("python")
        elif kind == "text":
            got = set(_norm(last))
            missing = [line for line in _norm(body) if line not in got]
            assert not missing, f"not in the output of {ran[-1]!r}: {missing}\n{last}"
    assert [r.split(" ")[0:2] for r in ran] == [
        ["adtarget", "plan"],
        ["export", "ADTARGET_API_KEY=$(adtarget"],
        ["serve"],
        ["python"],
        ["adtarget", "report"],
    ]
