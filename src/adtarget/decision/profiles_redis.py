"""Decision-time reads of the Redis profiles ``audience/redis_profiles.py`` loads.

Why a reader apart from the writer: decision nodes read one hash per request and never write;
the key layout (and why it is versioned) is documented with the writer. A reader caches the
live version for ``VERSION_TTL_S``, so after a switch it may read the previous version, which
the writer keeps whole for exactly that reason.
"""

from __future__ import annotations

import time
from typing import Any

from adtarget.audience.redis_profiles import (
    DEFAULT_PREFIX,
    VERSION_KEY,
    VERSION_TTL_S,
    as_text,
    decode_value,
    user_key,
)
from adtarget.decision.redis_client import connect


class RedisProfileStore:
    """Reads one hash per user from the version ``{prefix}__version__`` names.

    Values are JSON so numbers, bools and strings keep their type; a JSON list is a set
    dimension (read back as a frozenset).
    """

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = 0.02) -> None:
        self.prefix = prefix
        self._client: Any = connect(url, timeout=timeout, needed_by="RedisProfileStore")
        self._version: tuple[float, str | None] | None = None

    def version(self) -> str | None:
        """The live version; re-read at most every ``VERSION_TTL_S`` seconds."""
        now = time.monotonic()
        if self._version is not None and now - self._version[0] < VERSION_TTL_S:
            return self._version[1]
        value = as_text(self._client.get(self.prefix + VERSION_KEY))
        self._version = (now, value)
        return value

    def lookup(self, user_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The user's features and the version they came from (one ``HGETALL``)."""
        version = self.version()
        if version is None:
            return None, None
        raw: dict[bytes, bytes] = self._client.hgetall(user_key(self.prefix, version, user_id))
        if not raw:
            return None, version
        return {k.decode(): decode_value(v) for k, v in raw.items()}, version

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The user's features in the live version, or ``None`` if unknown."""
        return self.lookup(user_id)[0]

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()
