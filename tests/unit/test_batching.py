"""Micro-batching: concurrent submitters share model calls, and one batch never mixes models."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from marrowscope.inference.batching import MicroBatcher


class RecordingModel:
    """A model stand-in that records the batch sizes it was called with (adds its offset)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset
        self.calls: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(len(batch))
        return batch.reshape(len(batch), -1)[:, :1] + self.offset


def test_concurrent_requests_share_batches_and_get_their_own_results() -> None:
    batcher = MicroBatcher(max_batch=64, max_wait_s=0.05)
    model = RecordingModel(0.0)
    results: dict[int, list[float]] = {}

    def request(n: int) -> None:
        tensors = [np.full((1, 2, 2), n * 100 + i, np.float32) for i in range(8)]
        futures = batcher.submit(model, model, tensors)
        results[n] = [float(f.result(timeout=5)[0]) for f in futures]

    threads = [threading.Thread(target=request, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    for n in range(6):
        assert results[n] == [n * 100 + i for i in range(8)]
    assert sum(model.calls) == 48
    assert len(model.calls) < 6, f"no batching happened: {model.calls}"
    assert max(model.calls) <= 64


def test_max_batch_is_respected_and_models_are_not_mixed() -> None:
    batcher = MicroBatcher(max_batch=5, max_wait_s=0.05)
    old, new = RecordingModel(0.0), RecordingModel(1000.0)
    f_old = batcher.submit(old, old, [np.zeros((1, 1, 1), np.float32)] * 7)
    f_new = batcher.submit(new, new, [np.zeros((1, 1, 1), np.float32)] * 3)
    assert [float(f.result(timeout=5)[0]) for f in f_old] == [0.0] * 7
    assert [float(f.result(timeout=5)[0]) for f in f_new] == [1000.0] * 3
    batcher.close()
    assert max(old.calls + new.calls) <= 5
    assert sum(old.calls) == 7 and sum(new.calls) == 3


def test_a_failing_model_call_fails_only_its_items() -> None:
    batcher = MicroBatcher(max_batch=8, max_wait_s=0.0)

    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("model crashed")

    futures = batcher.submit("broken", broken, [np.zeros((1,), np.float32)])
    with pytest.raises(RuntimeError, match="model crashed"):
        futures[0].result(timeout=5)
    ok = RecordingModel(1.0)
    assert (
        float(batcher.submit(ok, ok, [np.zeros((1,), np.float32)])[0].result(timeout=5)[0]) == 1.0
    )
    batcher.close()
