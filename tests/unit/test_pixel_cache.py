"""The inference service's pixel cache: content-addressed keys only, LRU within a byte budget."""

import numpy as np
import pytest

from marrowscope.core.preprocess import InputSpecData
from marrowscope.inference.pixel_cache import PixelCache

SPEC = InputSpecData(size=8)


def _key(n: int) -> str:
    return f"cells/{n:02x}/{n:064x}.png"  # a content address


def _tensor(value: int) -> np.ndarray:
    return np.full((3, 8, 8), value, np.uint8)  # 192 bytes


def test_a_cached_input_comes_back_read_only_for_its_key_and_spec_only() -> None:
    cache = PixelCache(max_bytes=10_000)
    cache.put(_key(1), SPEC, _tensor(7))
    got = cache.get(_key(1), SPEC)
    assert got is not None and int(got[0, 0, 0]) == 7
    with pytest.raises(ValueError):
        got[0, 0, 0] = 1  # shared between requests: nobody may change it
    assert cache.get(_key(1), InputSpecData(size=8, dtype="float32")) is None  # another spec
    assert cache.get(_key(2), SPEC) is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)


def test_keys_without_a_content_address_are_never_cached() -> None:
    cache = PixelCache(max_bytes=10_000)
    cache.put("uploads/specimen-12/cell.png", SPEC, _tensor(1))
    assert cache.get("uploads/specimen-12/cell.png", SPEC) is None
    assert cache.stats.entries == 0


def test_the_least_recently_used_inputs_go_first_when_the_budget_is_full() -> None:
    cache = PixelCache(max_bytes=3 * 192)
    for n in range(3):
        cache.put(_key(n), SPEC, _tensor(n))
    assert cache.get(_key(0), SPEC) is not None  # 0 is now the most recently used
    cache.put(_key(3), SPEC, _tensor(3))
    assert cache.get(_key(1), SPEC) is None  # the least recently used left
    assert all(cache.get(_key(n), SPEC) is not None for n in (0, 2, 3))
    assert cache.stats.bytes == 3 * 192 and cache.stats.evictions == 1


def test_a_zero_budget_turns_the_cache_off() -> None:
    cache = PixelCache(max_bytes=0)
    cache.put(_key(1), SPEC, _tensor(1))
    assert cache.get(_key(1), SPEC) is None and cache.stats.entries == 0
