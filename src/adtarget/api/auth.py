"""API keys: creation (shown once), SHA-256 storage, revocation, and a cached resolver.

Why a cache: the decision route answers thousands of requests a second and must not query the
catalog for each one. Lookups are cached per process for ``ttl_seconds`` (2 s by default), so a
revoked key stops working on every worker within that time; ``invalidate()`` makes it immediate
in the process that revoked it.

Open mode (no key at all: every caller is admin) is decided once, when the service starts, and
can only be left: the first live key closes it for good. Revoking every key later never reopens
the API (that would hand admin to anyone on an address ``serve`` only checked at start); the
service then answers 401 to everyone and says why in its log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachetools import LRUCache, TTLCache
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from adtarget.catalog import api_keys
from adtarget.catalog.api_keys import ApiKey
from adtarget.errors import InvalidValue, NotFound, StoreUnavailable, Unauthorized

log = logging.getLogger("adtarget.api")

ROLES = ("admin", "advertiser", "reader", "decisions")
KEY_PREFIX = "adt_"
_CACHE_MAX = 10_000
_MISS: Any = object()
KEYLESS_LOG_INTERVAL_S = 60.0
"""How often a service whose keys are all gone repeats why it refuses everyone."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``actor`` names them in command history (``key:<id>``, ``admin-env``,
    ``open``), ``role`` is one of ``ROLES``, ``advertiser_id`` is set for advertiser keys."""

    actor: str
    role: str
    advertiser_id: int | None = None

    @property
    def is_admin(self) -> bool:
        """True for admin keys, the env admin key and open mode."""
        return self.role == "admin"


OPEN_PRINCIPAL = Principal(actor="open", role="admin")


def generate_key() -> str:
    """A new random key (256 bits), e.g. ``adt_3q...``."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex SHA-256 stored in ``api_keys.key_hash``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(
    *, session: Session, role: str, advertiser_id: int | None = None, name: str = ""
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext key (the only time it is visible).

    Args:
        session: a catalog session (the caller commits).
        role: one of ``admin``, ``advertiser``, ``reader``, ``decisions``.
        advertiser_id: required for (and only for) ``advertiser`` keys.
        name: a label people use to tell keys apart.
    """
    if role not in ROLES:
        raise InvalidValue(f"role must be one of {', '.join(ROLES)}, got {role!r}", field="role")
    if role == "advertiser":
        if advertiser_id is None:
            raise InvalidValue("an advertiser key needs --advertiser ID", field="advertiser_id")
        if not api_keys.advertiser_exists(session, advertiser_id):
            raise NotFound(f"advertiser {advertiser_id} does not exist", field="advertiser_id")
    elif advertiser_id is not None:
        raise InvalidValue(
            f"only advertiser keys are scoped to an advertiser, not {role!r}",
            field="advertiser_id",
        )
    key = generate_key()
    row = api_keys.add_key(
        session,
        name=name,
        key_hash=hash_key(key),
        key_prefix=key[:12],
        role=role,
        advertiser_id=advertiser_id,
    )
    return row, key


def list_keys(*, session: Session, include_revoked: bool = False) -> list[ApiKey]:
    """Every key, oldest first (hashes only; plaintext keys are never stored)."""
    return api_keys.keys(session, include_revoked=include_revoked)


def revoke_key(*, session: Session, key_id: int) -> ApiKey:
    """Mark a key revoked (kept for the audit trail); revoking twice is a no-op."""
    row = api_keys.find_key(session, key_id)
    if row is None:
        raise NotFound(f"api key {key_id} does not exist", field="id")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.flush()
    return row


def key_to_dict(row: ApiKey) -> dict[str, object]:
    """The public view of a key row (never the hash)."""
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.key_prefix,
        "role": row.role,
        "advertiser_id": row.advertiser_id,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


def parse_bearer(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header, ``None`` when absent."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Authorization must be 'Bearer KEY'", field="authorization")
    return value.strip()


class KeyResolver:
    """Turns an ``Authorization`` header into a ``Principal``, caching catalog lookups.

    Args:
        session_factory: returns the catalog's session factory.
        admin_key: ``ADTARGET_ADMIN_KEY`` (never open mode when set).
        ttl_seconds: how long a key lookup (and the open-mode key count) is reused.
        allow_open: ``False`` forbids open mode outright (``adtarget serve`` passes its start-up
            decision to every worker this way, so a worker restarted later cannot reopen).
    """

    def __init__(
        self,
        *,
        session_factory: Callable[[], sessionmaker[Session]],
        admin_key: str | None,
        ttl_seconds: float = 2.0,
        allow_open: bool = True,
    ) -> None:
        self._factory = session_factory
        self._admin_key = admin_key
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        # None: not decided yet; True: open (until a key appears); False: closed for good.
        self._open: bool | None = None if allow_open and not admin_key else False
        self._open_checked_until = 0.0
        self._keyless_logged_at: float | None = None
        # Fresh lookups for ``ttl_seconds`` (cachetools' TTLCache, bounded), and the last
        # principal each key resolved to, kept to serve stale while the catalog is down.
        self._cache: TTLCache[str, Principal | None] = TTLCache(
            maxsize=_CACHE_MAX, ttl=ttl_seconds, timer=time.monotonic
        )
        self._known: LRUCache[str, Principal] = LRUCache(maxsize=_CACHE_MAX)

    def invalidate(self) -> None:
        """Forget cached lookups (after creating or revoking a key in this process)."""
        with self._lock:
            self._open_checked_until = 0.0
            self._cache.clear()
            self._known.clear()
        # A key made while the service runs open closes it for good, even if it is revoked
        # before any request asked: look now, not at the next unauthenticated call.
        if self._open is not None:
            self.open_mode()

    def open_mode(self) -> bool:
        """True while the service runs open: no key existed at start and none exists since.

        Decided by the first call (the app's start-up), then only ever switched off.
        """
        if self._open is False:
            return False
        now = time.monotonic()
        if self._open is True and self._open_checked_until > now:
            return True
        try:
            count = self._live_keys()
        except SQLAlchemyError:
            # Catalog down: an open loopback service stays open; an undecided one fails closed.
            return self._open is True
        with self._lock:
            if count:
                self._open = False
            elif self._open is None:
                self._open = True
            self._open_checked_until = now + self._ttl
            return self._open is True

    def _live_keys(self) -> int:
        with self._factory()() as session:
            return api_keys.live_key_count(session)

    def _refuse(self, message: str) -> Unauthorized:
        """The 401 to raise; logs (at most once a minute) when no live key exists at all."""
        now = time.monotonic()
        last = self._keyless_logged_at
        if self._open is False and (last is None or now - last >= KEYLESS_LOG_INTERVAL_S):
            self._keyless_logged_at = now
            try:
                keyless = not self._admin_key and self._live_keys() == 0
            except SQLAlchemyError:
                keyless = False
            if keyless:
                log.warning(
                    "every API key is revoked and ADTARGET_ADMIN_KEY is not set: all requests "
                    "are refused (401). Open mode is decided only at start, so the API does not "
                    "reopen; create a key with `adtarget keys create --role admin`."
                )
        return Unauthorized(message, field="authorization")

    def resolve_cached(self, header: str | None) -> Principal | None:
        """The caller's principal when it is known without touching the catalog, else ``None``
        (then ``resolve`` decides, in a worker thread): lets the event loop authenticate a
        request with no thread hand-off on the hot path. Never raises."""
        try:
            key = parse_bearer(header)
        except Unauthorized:
            return None
        now = time.monotonic()
        if key is None:
            if self._open is True and self._open_checked_until > now:
                return OPEN_PRINCIPAL
            return None
        if self._open is None:
            return None
        if self._admin_key and hmac.compare_digest(key.encode(), self._admin_key.encode()):
            return Principal(actor="admin-env", role="admin")
        with self._lock:
            known: Principal | None = self._cache.get(hash_key(key))
        return known

    def resolve(self, header: str | None) -> Principal:
        """The caller's principal; raises ``Unauthorized`` for a missing or unknown key."""
        if self._open is None:  # the first request decides, if start-up did not
            self.open_mode()
        key = parse_bearer(header)
        if key is None:
            if self.open_mode():
                return OPEN_PRINCIPAL
            raise self._refuse("missing API key: send 'Authorization: Bearer KEY'")
        if self._admin_key and hmac.compare_digest(key.encode(), self._admin_key.encode()):
            return Principal(actor="admin-env", role="admin")
        digest = hash_key(key)
        with self._lock:
            hit = self._cache.get(digest, _MISS)
        principal: Principal | None
        if hit is not _MISS:
            principal = hit
        else:
            try:
                principal = self._lookup(digest)
            except SQLAlchemyError:
                principal = self._stale(digest)
            with self._lock:
                self._cache[digest] = principal
                if principal is None:
                    self._known.pop(digest, None)
                else:
                    self._known[digest] = principal
        if principal is None:
            if self.open_mode():
                return OPEN_PRINCIPAL
            raise self._refuse("unknown or revoked API key")
        return principal

    def _stale(self, digest: str) -> Principal | None:
        """While the catalog is down, a key seen recently keeps working (serve-stale).

        Why: ad servers must keep getting answers from the in-memory index when the catalog
        database is unreachable; the price is that a revocation waits for the catalog to return.
        A key never seen before cannot be checked, so that request gets a 503, not a 500.
        """
        with self._lock:
            known: Principal | None = self._known.get(digest)
        if known is not None:
            return known
        raise StoreUnavailable(
            "the catalog database is unavailable, so this API key cannot be checked; retry",
            field="authorization",
        )

    def _lookup(self, digest: str) -> Principal | None:
        with self._factory()() as session:
            row = api_keys.live_key_by_hash(session, digest)
            if row is None:
                return None
            return Principal(actor=f"key:{row.id}", role=row.role, advertiser_id=row.advertiser_id)
