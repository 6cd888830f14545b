"""Serve the console's page and static files from the installed package (no CDN, no build step).

Why one HTML page: every screen is an ES module under ``static/js`` that talks to ``/v1`` with
the key the user typed, so the server side is only files. A strict Content-Security-Policy
(``'self'`` only) makes "nothing loaded from the internet" a property the browser enforces.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

PREFIX = "/console"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def index_html() -> str:
    """The console's one HTML page (from package data)."""
    return (resources.files("adtarget.console") / "static" / "index.html").read_text("utf-8")


def mount_console(app: FastAPI) -> None:
    """Add ``GET /console`` (the page) and ``/console/static/*`` (scripts, styles, charts)."""
    page = index_html()

    async def console_page() -> HTMLResponse:
        return HTMLResponse(page, headers=HEADERS)

    async def console_slash() -> RedirectResponse:
        return RedirectResponse(PREFIX, status_code=308)

    app.add_api_route(PREFIX, console_page, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{PREFIX}/", console_slash, methods=["GET"], include_in_schema=False)
    app.mount(
        f"{PREFIX}/static",
        StaticFiles(packages=[("adtarget.console", "static")]),
        name="console-static",
    )
