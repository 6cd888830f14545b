"""What one forecast keeps for the next: per live index, the index's matches per (user,
context) and, per window, each user's replay without the proposal.

Why this is safe to keep: the serving index object never changes (a catalog change makes a
new one), and the replay without the proposal (the "twin") does not depend on the proposal.
Where no budget couples users (``_Inputs.coupled`` false), a user's twin answers depend only on
their requests in the window, their profile and the live line items: nothing another user or
the proposal does. So a user's twin totals are kept per (index, window) with the profile they
were computed from, and reused only while the user's profile is still equal (real-time profile
updates change a profile without a new snapshot version). A window is the replayed days and the
log files that hold them (``RequestStore.day_version``), the flight bounds and the line item the
proposal replaces; a store without ``day_version`` (PostgreSQL) is never cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

from adtarget.decision.index import LineItemIndex

Key = tuple[str, str]
Profile = dict[str, Any] | None

INDEXES_KEPT = 2
"""Live indexes whose caches are kept (the current one and the one it replaced)."""
WINDOWS_KEPT = 8
"""Windows (flight, days, replaced line item) whose twins are kept per index."""
MATCHES_KEPT_BYTES = 128 * 1024 * 1024
"""Bytes of match bits kept per index at most, then the memo starts over (a match is one bit
per live line item: 10,000 line items make ~1.3 kB per (user, context))."""


class LiveCache:
    """The caches of one live index (see the module docstring)."""

    def __init__(self, live: LineItemIndex) -> None:
        self.live = live
        self.matches: dict[Key, tuple[Profile, int]] = {}
        self._match_bytes = 0
        self.twins: OrderedDict[Hashable, dict[str, tuple[Profile, dict[int, float]]]] = (
            OrderedDict()
        )

    def twins_of(self, window: Hashable) -> dict[str, tuple[Profile, dict[int, float]]]:
        """The twin totals kept for ``window`` (an empty dict to fill when new)."""
        with _LOCK:
            found = self.twins.get(window)
            if found is None:
                found = self.twins[window] = {}
                while len(self.twins) > WINDOWS_KEPT:
                    self.twins.popitem(last=False)
            else:
                self.twins.move_to_end(window)
            return found

    def matched(self, key: Key, profile: Mapping[str, Any] | None) -> int | None:
        """The kept match bits of ``key`` if computed from an equal profile, else ``None``."""
        found = self.matches.get(key)
        if found is None or found[0] != profile:
            return None
        return found[1]

    def keep_match(self, key: Key, profile: Mapping[str, Any] | None, bits: int) -> None:
        """Keep ``bits`` for ``key`` (computed from ``profile``; kept as a copy, for the
        store's profile may change after: a caller keeping many keys of a user passes one
        copy to ``keep_copied``)."""
        self.keep_copied(key, dict(profile) if profile is not None else None, bits)

    def keep_copied(self, key: Key, profile: Profile, bits: int) -> None:
        """``keep_match`` with ``profile`` already a copy of its own (never changed after)."""
        size = bits.bit_length() // 8 + 64
        if self._match_bytes + size > MATCHES_KEPT_BYTES:
            self.matches.clear()
            self._match_bytes = 0
        self.matches[key] = (profile, bits)
        self._match_bytes += size


_LOCK = threading.Lock()
_CACHES: list[LiveCache] = []


def cache_for(live: LineItemIndex) -> LiveCache:
    """The cache of ``live`` (made on first use; the oldest index's cache is dropped)."""
    with _LOCK:
        for cache in _CACHES:
            if cache.live is live:
                return cache
        cache = LiveCache(live)
        _CACHES.append(cache)
        del _CACHES[:-INDEXES_KEPT]
        return cache


def clear() -> None:
    """Forget everything kept (tests compare a cold forecast with a warm one)."""
    with _LOCK:
        _CACHES.clear()
