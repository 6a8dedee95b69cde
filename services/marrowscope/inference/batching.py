"""Micro-batching: concurrent requests share model runs.

One worker thread owns the model calls. Requests put preprocessed tensors on a queue together
with the model they pinned when they started; the worker takes up to ``max_batch`` tensors,
waiting at most ``max_wait`` after the first one, and runs them in one call per model. A batch
never mixes model versions, so a hot swap cannot change the version inside one request.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from marrowscope.core import metrics

RunFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Item:
    model_key: object
    run: RunFn
    tensor: np.ndarray
    future: Future[np.ndarray] = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counters for benchmarks (the metrics endpoint has its own histograms)."""

    batches: int = 0
    items: int = 0
    model_seconds: float = 0.0

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher:
    """Collects single tensors from many threads into batched model calls."""

    def __init__(self, max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
        self._closed = False
        self._worker.start()

    def submit(self, model_key: object, run: RunFn, tensors: Sequence[np.ndarray]) -> list[Future]:
        """Queue ``tensors`` (each C x H x W) for ``run``; one future per tensor."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        items = [_Item(model_key, run, t) for t in tensors]
        for item in items:
            self._queue.put(item)
        return [item.future for item in items]

    def _collect(self, first: _Item) -> list[_Item]:
        items = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(items) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # let the loop see the stop signal after this batch
                break
            items.append(item)
        return items

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = self._collect(first)
            by_model: dict[int, list[_Item]] = {}
            for item in items:
                by_model.setdefault(id(item.model_key), []).append(item)
            for group in by_model.values():
                self._run(group)

    def _run(self, group: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            outputs = group[0].run(np.stack([item.tensor for item in group]))
        except Exception as error:  # a failed model call fails only its own items
            for item in group:
                item.future.set_exception(error)
            return
        seconds = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.items += len(group)
        self.stats.model_seconds += seconds
        metrics.INFERENCE_BATCH_SIZE.observe(len(group))
        metrics.INFERENCE_MODEL_SECONDS.observe(seconds)
        for item, output in zip(group, outputs, strict=True):
            item.future.set_result(output)

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._worker.join(timeout=5)
