"""Browser fixtures: a live ``adtarget serve`` on a free loopback port and Debian's Chromium.

Why a real server and a real browser: the console is HTML and JavaScript calling the JSON API;
only a browser running it against ``adtarget serve`` shows that a person can use it. Playwright
comes from PyPI; its own browser download cannot work here, so it drives ``/usr/bin/chromium``
(``apt-get install -y chromium``; ``.ci/run`` installs it). Without Chromium the tests skip
and say why. One server per test session (per xdist worker), one browser per test module; each
test gets a fresh browser context (no shared cookies or storage) at 1280x800.

Fixtures for other browser tests: ``live_server`` (``LiveServer``: ``url``, ``admin_key``,
``data_dir``), ``browser``, ``page`` (fails the test on a JavaScript error or on any request that
leaves loopback: the console works offline).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from serving import free_port, wait_until_serving

CHROMIUM = Path(os.environ.get("ADTARGET_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class LiveServer:
    """A running ``adtarget serve`` seeded by ``adtarget demo``."""

    url: str
    admin_key: str
    data_dir: Path

    def api(self) -> httpx.Client:
        """An HTTP client for the same API, with the admin key."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30
        )


def _adtarget() -> list[str]:
    script = Path(sys.executable).with_name("adtarget")
    return [str(script)] if script.exists() else [sys.executable, "-m", "adtarget.cli.main"]


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """``adtarget demo`` into a temp data dir, then ``adtarget serve`` on a free loopback port."""
    data_dir = Path(tempfile.mkdtemp(prefix="adtarget-console-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADTARGET_")}
    key = secrets.token_urlsafe(24)
    env.update(ADTARGET_DATA_DIR=str(data_dir), ADTARGET_ADMIN_KEY=key, NO_COLOR="1")
    demo = subprocess.run(
        [*_adtarget(), "demo"], env=env, capture_output=True, text=True, timeout=180
    )
    assert demo.returncode == 0, f"adtarget demo failed:\n{demo.stdout[-3000:]}\n{demo.stderr}"
    port = free_port()
    log = (data_dir / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*_adtarget(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, proc, log=data_dir / "serve.log")
        yield LiveServer(url=url, admin_key=key, data_dir=data_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium from ``/usr/bin/chromium`` under Playwright (skips with a reason when absent).

    Module-scoped, not session-scoped: Playwright's sync API keeps an asyncio loop running in
    this thread while it is open, and every later test of the worker calling ``asyncio.run``
    would fail. A module's tests run back to back on a worker, so it is one launch per module.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        # ``launch`` gives Chromium a fresh temporary user-data-dir of its own, removed on close
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh context and page; fails the test on a page error or a non-loopback request."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_request(request: Any) -> None:
        host = urlparse(request.url).hostname or ""
        if request.url.startswith(("http:", "https:", "ws:", "wss:")) and host not in LOOPBACK:
            outside.append(request.url)

    page.on("request", on_request)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the console: {errors}"
    assert not outside, f"the console fetched from outside loopback: {outside}"
