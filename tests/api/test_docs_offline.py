"""``/docs`` and ``/redoc`` name only this server's own files (the browser test renders them)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from adtarget.api.app import create_app
from adtarget.settings import Settings

URL = re.compile(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""")


def test_doc_pages_load_nothing_from_outside(
    settings: Settings, started: Callable[..., Any]
) -> None:
    client = started(create_app(settings))
    for page in ("/docs", "/redoc"):
        res = client.get(page)
        assert res.status_code == 200
        assert "default-src 'self'" in res.headers["content-security-policy"]
        urls = URL.findall(res.text)
        assert urls and all(u.startswith("/") for u in urls), urls
        for url in urls:
            assert client.get(url).status_code == 200, url
    bundle = client.get("/docs/assets/redoc.standalone.js")
    assert bundle.status_code == 200 and b"cdn.redoc.ly" not in bundle.content
