"""The API-key repository: the ``api_keys`` rows (hashes only; plaintext keys are never stored).

The API decides what a key may do and how keys are made (``api/auth.py``); this module is the
only one that reads or writes their rows.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adtarget.catalog.tables import Advertiser, ApiKey

__all__ = [
    "ApiKey",
    "add_key",
    "advertiser_exists",
    "find_key",
    "keys",
    "live_key_by_hash",
    "live_key_count",
]


def advertiser_exists(session: Session, advertiser_id: int) -> bool:
    """Is there an advertiser with this id (an advertiser key must name one)?"""
    return session.get(Advertiser, advertiser_id) is not None


def add_key(
    session: Session,
    *,
    name: str,
    key_hash: str,
    key_prefix: str,
    role: str,
    advertiser_id: int | None,
) -> ApiKey:
    """Store a new key's row (flushed, so it has an id; the caller commits)."""
    row = ApiKey(
        name=name, key_hash=key_hash, key_prefix=key_prefix, role=role, advertiser_id=advertiser_id
    )
    session.add(row)
    session.flush()
    return row


def keys(session: Session, *, include_revoked: bool = False) -> list[ApiKey]:
    """Every key, oldest first."""
    stmt = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(stmt))


def find_key(session: Session, key_id: int) -> ApiKey | None:
    """One key by id, or ``None``."""
    return session.get(ApiKey, key_id)


def live_key_count(session: Session) -> int:
    """How many keys are not revoked (none at all: the service may run open on loopback)."""
    stmt = select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
    return int(session.scalar(stmt) or 0)


def live_key_by_hash(session: Session, digest: str) -> ApiKey | None:
    """The unrevoked key whose SHA-256 is ``digest``, or ``None``."""
    stmt = select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    return session.scalar(stmt)
