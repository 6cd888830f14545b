"""``/docs`` (Swagger UI) and ``/redoc`` served from an installed package, never from a CDN.

Why: FastAPI's default pages load their scripts, styles, favicon and (ReDoc) Google fonts from
the internet, so on an isolated network the documentation a client generates code from is a
blank page. ``fastapi-offline`` ships the same Swagger UI and ReDoc bundles as package data;
this module serves them under ``/docs/assets`` and writes pages that name only those files.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
#: The documentation routes; public like ``/openapi.json`` (they carry no data).
PATHS = frozenset({"/docs", "/redoc", OAUTH2_REDIRECT})
#: The one outside address in ReDoc's bundle that a page loads (the footer's logo image).
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
_INLINE = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _with_csp(page: HTMLResponse) -> tuple[str, dict[str, str]]:
    """The page's HTML and a Content-Security-Policy allowing this origin only.

    Why: the bundles also name outside addresses of their own (ReDoc's footer loads a logo from
    cdn.redoc.ly); the policy makes "nothing from the internet" a rule the browser enforces,
    as for the console. Inline scripts (Swagger UI's start-up) are allowed by their hash.
    """
    body = bytes(page.body).decode("utf-8")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for m in _INLINE.findall(body)
    )
    csp = (
        f"default-src 'self'; script-src 'self' {hashes}; worker-src 'self' blob:; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return body, {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff"}


@cache
def redoc_bundle() -> bytes:
    """ReDoc's bundle from the package, its footer logo pointed at our own favicon.

    Read on first use (1 MB; the test suite builds hundreds of apps that never serve it).
    """
    text = (resources.files("fastapi_offline") / "static" / "redoc.standalone.js").read_text(
        "utf-8"
    )
    return text.replace(REDOC_LOGO, f"{ASSETS}/favicon.png").encode("utf-8")


def install_docs(app: FastAPI, *, openapi_url: str = "/openapi.json") -> None:
    """Add ``/docs``, ``/redoc`` and their assets (the app is built with both urls ``None``)."""
    title = app.title

    swagger_page = _with_csp(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            # no validator badge: it would fetch validator.swagger.io for every non-loopback host
            swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
        )
    )
    redoc_page = _with_csp(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
    )

    async def swagger() -> HTMLResponse:
        return HTMLResponse(swagger_page[0], headers=swagger_page[1])

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc() -> HTMLResponse:
        return HTMLResponse(redoc_page[0], headers=redoc_page[1])

    async def redoc_js() -> Response:
        return Response(
            redoc_bundle(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.add_api_route(
        f"{ASSETS}/redoc.standalone.js", redoc_js, methods=["GET"], include_in_schema=False
    )
    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route(OAUTH2_REDIRECT, oauth2_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets")
