"""One way to open the Redis client the decision stores use: short timeouts, a clear hint when
the optional ``redis`` extra is missing."""

from __future__ import annotations

from typing import Any


def connect(url: str, *, timeout: float, needed_by: str) -> Any:
    """A ``redis.Redis`` for ``url`` whose connects and reads give up after ``timeout`` seconds.

    Why short timeouts: a decision must answer within its deadline, so a slow Redis has to fail
    fast and let the circuit breaker answer degraded.
    """
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - the redis extra installs it
        raise ImportError(
            f"{needed_by} needs the redis client: pip install 'adtarget[redis]'"
        ) from exc
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
