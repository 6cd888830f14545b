"""The per-snapshot bitmap cache is bounded by bytes and evicts the least recently used."""

from __future__ import annotations

from pyroaring import FrozenBitMap

from adtarget.audience.index import BitmapCache


def _bm(start: int) -> FrozenBitMap:
    return FrozenBitMap(range(start, start + 10))


def test_bytes_stay_under_the_bound_and_the_least_recently_used_goes_first() -> None:
    cache = BitmapCache(max_bytes=100)
    cache.put(("country", 1), _bm(0), 40)
    cache.put(("country", 2), _bm(10), 40)
    assert cache.get(("country", 1)) == _bm(0)  # now the most recently used
    cache.put(("country", 3), _bm(20), 40)  # 120 bytes: one must go, the unused one
    assert cache.get(("country", 2)) is None
    assert cache.get(("country", 1)) == _bm(0) and cache.get(("country", 3)) == _bm(20)
    assert cache.bytes == 80 and len(cache) == 2


def test_a_bitmap_larger_than_the_cache_is_not_kept_and_evicts_nothing() -> None:
    cache = BitmapCache(max_bytes=100)
    cache.put(("age", 1), _bm(0), 60)
    cache.put(("age", 2), _bm(10), 500)
    assert cache.get(("age", 2)) is None and cache.get(("age", 1)) == _bm(0)
    assert cache.bytes == 60


def test_many_values_never_grow_past_the_bound() -> None:
    cache = BitmapCache(max_bytes=1_000)
    for value in range(10_000):
        cache.put(("genre", value), _bm(value), 30)
        assert cache.bytes <= 1_000
    assert len(cache) == 1_000 // 30
