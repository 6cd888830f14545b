"""Signed tracking URLs: what a player fires after an ad plays, and how adtarget trusts it.

Why signed and not looked up: a beacon arrives without an API key, from any player, long after
the decision; the URL itself must say which decision, line item, creative, user, event and price
it stands for, and prove that adtarget wrote it. Each decision's facts are encoded once
(``payload``, base64url JSON) and each event's URL carries ``HMAC-SHA256(key, event "." payload)``
(truncated to 128 bits), so tampering with any field — the event type included — or signing with
another key fails the check, and the expiry inside the payload bounds replays to the TTL (within
it, replays are harmless: one event per (decision, type) is recorded, ``event_id`` deduplicates).

Keys rotate with a grace period: ``ADTARGET_TRACKING_KEYS`` lists keys, the first signs, every
listed key verifies (each token names its key by a short fingerprint), so a new key goes first
and the old one stays listed for one TTL before it is dropped.

Why hand-held HMAC states and not ``hmac.digest`` or itsdangerous: this runs seven times per ad
on the decision hot path. HMAC-SHA256 is ``H(key ^ opad || H(key ^ ipad || message))``; the two
padded-key hash states (and, per event, the inner state already fed with ``event "."``) are
computed once per key, so each signature is two ``hashlib`` state copies and two short hashes —
the same bytes as ``hmac.digest`` (tests check), at about a third of its cost on Python 3.11,
whose ``hmac.digest`` sets up an OpenSSL HMAC context per call. itsdangerous' serializer (JSON,
key derivation and base64 per call) costs ~15 µs per token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from adtarget.errors import Forbidden

#: The events a decision's ``tracking`` names, in the order players fire them.
TRACKED_EVENTS: tuple[str, ...] = (
    "impression",
    "start",
    "first_quartile",
    "midpoint",
    "third_quartile",
    "complete",
    "click",
)
PATH_PREFIX = "/v1/track"
_VERSION = 1
_SIG_BYTES = 16
_SIG_CHARS = 22  # base64 of 16 bytes without its "==" padding
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class BeaconRefused(Forbidden):
    """A tracking URL that adtarget did not sign, was changed, or has expired (403)."""

    code = "beacon_refused"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, field="token", reason=reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Beacon:
    """The facts one verified tracking URL stands for."""

    event: str
    decision_id: str
    line_item_id: int
    creative_id: int
    campaign_id: int
    advertiser_id: int
    user_id: str
    price_micros: int
    """What one impression costs (the line item's CPM / 1000), taken on the impression."""
    country: str | None
    device: str | None
    expires: int

    def event_row(self, now: float) -> dict[str, Any]:
        """The delivery event this beacon records (``POST /v1/events``' shape)."""
        row: dict[str, Any] = {
            "event_id": f"{self.decision_id}.{self.event}",
            "type": self.event,
            "ts": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "user_id": self.user_id,
            "line_item_id": self.line_item_id,
            "campaign_id": self.campaign_id,
            "advertiser_id": self.advertiser_id,
            "creative_id": self.creative_id,
        }
        if self.event == "impression" and self.price_micros:
            row["cost"] = f"{self.price_micros / 1_000_000:.6f}"
        if self.country is not None:
            row["country"] = self.country
        if self.device is not None:
            row["device"] = self.device
        return row


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(key: bytes) -> str:
    """A short public name for a key (which one signed a token), not a secret."""
    return _b64(hashlib.sha256(b"adtarget-tracking:" + key).digest()[:6])


class TrackingSigner:
    """Signs tracking URLs with the first key and verifies with any listed key."""

    def __init__(self, keys: Sequence[bytes], *, ttl_seconds: int, base_url: str = "") -> None:
        if not keys:
            raise ValueError("at least one tracking key is needed")
        self._keys = {fingerprint(k): _KeyStates(k) for k in keys}
        self._kid = fingerprint(keys[0])
        self._signing = self._keys[self._kid]
        self.ttl_seconds = ttl_seconds
        prefix = f"{base_url.rstrip('/')}{PATH_PREFIX}/"
        self._heads = tuple((e, f"{prefix}{e}/{self._kid}.") for e in TRACKED_EVENTS)

    def urls(
        self,
        *,
        decision_id: str,
        line_item_id: int,
        creative_id: int,
        campaign_id: int,
        advertiser_id: int,
        user_id: str,
        bid_cpm: float,
        context: Mapping[str, Any],
        now: float | None = None,
    ) -> dict[str, str]:
        """``{event: URL}`` for every tracked event of one served ad."""
        expires = int(now if now is not None else time.time()) + self.ttl_seconds
        country, device = context.get("country"), context.get("device")
        fields = [
            _VERSION,
            decision_id,
            line_item_id,
            creative_id,
            campaign_id,
            advertiser_id,
            user_id,
            round(bid_cpm * 1000),
            country if isinstance(country, str) else None,
            device if isinstance(device, str) else None,
            expires,
        ]
        payload = _b64(orjson.dumps(fields))
        raw = payload.encode("ascii")
        sign = self._signing.sign
        return {event: f"{head}{payload}.{sign(event, raw)}" for event, head in self._heads}

    def verify(self, event: str, token: str, *, now: float | None = None) -> Beacon:
        """The beacon ``/v1/track/{event}/{token}`` stands for.

        Raises ``BeaconRefused`` (with a ``reason``: malformed, unknown_key, bad_signature,
        expired) for anything adtarget did not sign as it is.
        """
        if event not in TRACKED_EVENTS:
            raise BeaconRefused(f"unknown tracking event {event!r}", "malformed")
        parts = token.split(".")
        if len(parts) != 3:
            raise BeaconRefused("tracking token: expected key.payload.signature", "malformed")
        kid, payload, sig = parts
        states = self._keys.get(kid)
        if states is None:
            raise BeaconRefused("tracking token signed with a key not configured", "unknown_key")
        try:
            raw = payload.encode("ascii")
        except UnicodeEncodeError:
            raise BeaconRefused("tracking token: payload is not base64url", "malformed") from None
        given = sig.encode("ascii", "replace")  # compared as text: only the canonical form
        if not hmac.compare_digest(given, states.sign(event, raw).encode("ascii")):
            raise BeaconRefused("tracking token: signature does not match", "bad_signature")
        try:
            fields = orjson.loads(_unb64(payload))
            (
                version, decision_id, li, creative, campaign, advertiser, user, price,
                country, device, expires,
            ) = fields  # fmt: skip
        except (ValueError, TypeError):  # signed by us, so only a format change gets here
            raise BeaconRefused("tracking token: payload unreadable", "malformed") from None
        if version != _VERSION:
            raise BeaconRefused(f"tracking token version {version} not understood", "malformed")
        if (now if now is not None else time.time()) > expires:
            raise BeaconRefused("tracking token expired", "expired")
        return Beacon(
            event, decision_id, li, creative, campaign, advertiser, user, price, country, device,
            expires,
        )  # fmt: skip


class _KeyStates:
    """One key's HMAC-SHA256 precomputed: the outer padded-key state and, per event, the inner
    state already fed with ``event "."`` (RFC 2104 with the pads hashed once, not per call)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._inner: dict[str, Any] = {}
        for event in TRACKED_EVENTS:
            state = inner.copy()
            state.update(f"{event}.".encode())
            self._inner[event] = state

    def sign(self, event: str, payload: bytes) -> str:
        """base64url of ``HMAC-SHA256(key, event "." payload)`` truncated to 128 bits."""
        inner = self._inner[event].copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        tag = binascii.b2a_base64(outer.digest()[:_SIG_BYTES], newline=False)
        return tag[:_SIG_CHARS].translate(_URLSAFE).decode("ascii")


def load_keys(configured: str | None, data_dir: Path) -> list[bytes]:
    """The tracking keys: ``ADTARGET_TRACKING_KEYS`` (comma-separated, first signs), else one
    generated on first use and kept in the data dir (``tracking.key``, mode 0600), so every
    worker of one machine signs alike. A fleet of hosts must set the variable."""
    if configured:
        keys = [k.strip().encode() for k in configured.split(",") if k.strip()]
        if keys:
            return keys
    path = data_dir / "tracking.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tracking.key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)  # the first worker's key wins; the others read it
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return [path.read_text().strip().encode()]
