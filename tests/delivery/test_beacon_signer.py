"""The tracking signer's precomputed HMAC states sign exactly what RFC 2104 HMAC-SHA256 signs."""

from __future__ import annotations

import base64
import hmac

import pytest

from adtarget.delivery.beacons import TRACKED_EVENTS, BeaconRefused, TrackingSigner

FACTS = {
    "decision_id": "0193a5c2f0e17c2b9d4e5f60718293a4",
    "line_item_id": 12,
    "creative_id": 3,
    "campaign_id": 4,
    "advertiser_id": 5,
    "user_id": "u42",
    "bid_cpm": 7.25,
    "context": {"country": "US", "device": "tv"},
    "now": 1_800_000_000.0,
}


@pytest.mark.parametrize("key", [b"k", b"x" * 64, b"long key " * 20])
def test_signature_is_hmac_sha256_of_event_and_payload(key: bytes) -> None:
    """Short, block-sized and longer-than-a-block keys (hashed first, as RFC 2104 says)."""
    urls = TrackingSigner([key], ttl_seconds=60).urls(**FACTS)  # type: ignore[arg-type]
    for event in TRACKED_EVENTS:
        _kid, payload, sig = urls[event].rsplit("/", 1)[1].split(".")
        want = hmac.digest(key, f"{event}.{payload}".encode(), "sha256")[:16]
        assert sig == base64.urlsafe_b64encode(want).rstrip(b"=").decode()


def test_non_canonical_or_padded_signature_is_refused() -> None:
    signer = TrackingSigner([b"k"], ttl_seconds=60)
    token = signer.urls(**FACTS)["click"].rsplit("/", 1)[1]  # type: ignore[arg-type]
    signer.verify("click", token, now=FACTS["now"])  # type: ignore[arg-type]
    kid, payload, sig = token.split(".")
    for bad in (sig + "==", sig[:-1] + chr(ord(sig[-1]) ^ 1), sig + "é"):
        with pytest.raises(BeaconRefused) as info:
            signer.verify("click", f"{kid}.{payload}.{bad}", now=FACTS["now"])  # type: ignore[arg-type]
        assert info.value.reason == "bad_signature"
