"""One way to open the Redis client the decision stores use: single Redis or Redis Cluster,
short timeouts, bounded retries.

Why bounded retries: redis-py's cluster client follows ``MOVED``/``ASK`` redirects itself (a
slot migration) and refreshes its slot map after a connection error (a failover), retrying
through ``retry``. Its default backs off for seconds; a decision has a 50 ms deadline, so we
allow ``RETRIES`` quick attempts and let the per-node circuit breaker (``node_breakers.py``)
answer degraded for the users of a shard that stays down until a replica is promoted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from adtarget.audience.redis_profiles import bounded_retry, connection_errors, open_client

RETRIES = 2
"""Extra attempts per command (after a redirect, a refreshed slot map or a dropped socket)."""
BACKOFF_BASE_S = 0.002
BACKOFF_CAP_S = 0.01


def connect(
    url: str, *, timeout: float, needed_by: str = "adtarget", cluster: bool | None = None
) -> Any:
    """A ``redis.Redis`` or ``redis.cluster.RedisCluster`` for ``url``.

    Args:
        url: ``redis://host:port/db``; for a cluster any one node.
        timeout: connect and read timeout in seconds (a slow store must fail fast).
        needed_by: named in the error when the ``redis`` extra is missing.
        cluster: ``True``/``False`` to force the mode; ``None`` asks the node.
    """
    retry = bounded_retry(
        RETRIES,
        base_s=BACKOFF_BASE_S,
        cap_s=BACKOFF_CAP_S,
        missing=f"{needed_by} needs the redis client: pip install 'adtarget[redis]'",
    )
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": retry,
    }

    def open_now() -> Any:
        return open_client(url, cluster=cluster, **options)

    try:
        return open_now()
    except connection_errors():
        # Redis down at start-up: the node cannot say whether it is a cluster yet. Serve
        # degraded (each call fails through the breaker) and ask again on the next call.
        return DeferredClient(open_now)


class DeferredClient:
    """A client opened on first use; until then every attribute access tries to open it (and
    raises the connection error while Redis is still down)."""

    def __init__(self, open_now: Callable[[], Any]) -> None:
        self._open_now = open_now
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    client = self._client = self._open_now()
        return getattr(client, name)

    def close(self) -> None:
        """Close the client if it was ever opened."""
        if self._client is not None:
            self._client.close()


def node_of(client: Any, key: str) -> str:
    """The name (``host:port``) of the node serving ``key``; ``""`` for a single Redis.

    Why: one circuit breaker per cluster node, chosen before the call, so a failed shard opens
    only its own breaker (``node_breakers.py``).
    """
    try:
        nodes = getattr(client, "nodes_manager", None)
        if nodes is None:
            return ""
        node = nodes.get_node_from_slot(client.keyslot(key))
    except Exception:  # no owner for the slot right now: the breaker of the unowned slots
        return "?"
    return str(node.name)
