"""``HEAD`` on every ``GET`` route: the ``GET`` answer's status and headers, without its body.

Why: HTTP says a server answering ``GET`` on a path answers ``HEAD`` too (load balancers and
link checkers use it), but FastAPI's routes serve only the methods they were declared with, so
``HEAD /healthz`` was a 405. Every ``GET`` route of this service is free of side effects
(reads, health, metrics), so the request is run as the ``GET`` and only its body is dropped;
``Content-Length`` stays the ``GET``'s, as RFC 9110 allows.
"""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def serves_get_only(app: ASGIApp, scope: Scope) -> bool:
    """Whether some route serves ``GET`` at this ``HEAD`` request's path and none ``HEAD``."""
    routes = getattr(getattr(app, "router", None), "routes", ())

    def served(method: str) -> bool:
        probe = {**scope, "method": method}
        return any(r.matches(probe)[0] == Match.FULL for r in routes)

    return not served("HEAD") and served("GET")


async def head_as_get(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``scope`` (a ``HEAD``) as a ``GET`` through ``app`` and send no body bytes."""

    async def headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return  # swallow the middle chunks; the last one ends the response
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    await app({**scope, "method": "GET"}, receive, headers_only)
