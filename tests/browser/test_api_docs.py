"""``/docs`` and ``/redoc`` render in a real browser with the internet cut off.

Every request that leaves loopback is aborted (and the ``page`` fixture fails the test if one
is even attempted), so a page whose scripts, styles or fonts came from a CDN would stay blank.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="playwright not installed").expect

if TYPE_CHECKING:
    from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture
def offline(page: Any) -> Iterator[Any]:
    """The page with every non-loopback request aborted, as on an isolated network."""

    def route(r: Any) -> None:
        host = urlparse(r.request.url).hostname or ""
        if r.request.url.startswith(("http:", "https:")) and host not in LOOPBACK:
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)
    yield page


def test_swagger_ui_renders_offline_with_the_bearer_scheme(
    offline: Any, live_server: LiveServer
) -> None:
    offline.goto(f"{live_server.url}/docs")
    title = offline.locator(".swagger-ui .info .title")
    expect(title).to_contain_text("adtarget", timeout=60_000)
    expect(offline.get_by_text("/v1/campaigns", exact=True).first).to_be_visible()
    authorize = offline.get_by_role("button", name="Authorize").first
    expect(authorize).to_be_visible()
    authorize.click()
    expect(offline.get_by_text("bearer (http, Bearer)")).to_be_visible()


def test_redoc_renders_offline(offline: Any, live_server: LiveServer) -> None:
    offline.goto(f"{live_server.url}/redoc")
    heading = offline.get_by_role("heading", name="adtarget", exact=False).first
    expect(heading).to_be_visible(timeout=60_000)  # ReDoc parses the spec in the page
    expect(offline.get_by_text("/v1/campaigns").first).to_be_attached()
