"""Model inputs of stored cells, kept between requests within a memory budget.

An SSL round predicts the whole unlabelled pool with the round's new model, so the same cells
come back every round. Their crops are stored under their content address (the key names the
sha256 of the bytes, and the store verifies it on every read), so the model input of a
(key, input spec) pair never changes: decoding it again is wasted work. Decoding a stored PNG
crop costs more than the model itself at CPU sizes (bench/classifier.py), so rounds after the
first run at the model's speed. Keys without a content address are never cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from marrowscope.core.objectstore import address_of
from marrowscope.core.preprocess import InputSpecData


@dataclass
class PixelCacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0


class PixelCache:
    """Least-recently-used model inputs, at most ``max_bytes`` of them (0 disables)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.stats = PixelCacheStats()
        self._entries: OrderedDict[tuple[str, InputSpecData], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, spec: InputSpecData) -> np.ndarray | None:
        """The cached input of ``key`` for ``spec`` (read-only), or None."""
        if not self.max_bytes:
            return None
        with self._lock:
            tensor = self._entries.get((key, spec))
            if tensor is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end((key, spec))
            self.stats.hits += 1
            return tensor

    def put(self, key: str, spec: InputSpecData, tensor: np.ndarray) -> None:
        """Keep ``tensor`` when ``key`` is content-addressed and it fits the budget. The array
        becomes read-only: requests share it, and batches only read (stack) it."""
        if not self.max_bytes or tensor.nbytes > self.max_bytes or address_of(key) is None:
            return
        tensor.flags.writeable = False
        with self._lock:
            previous = self._entries.pop((key, spec), None)
            if previous is not None:
                self.stats.bytes -= previous.nbytes
            self._entries[(key, spec)] = tensor
            self.stats.bytes += tensor.nbytes
            while self.stats.bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.stats.bytes -= evicted.nbytes
                self.stats.evictions += 1
            self.stats.entries = len(self._entries)
