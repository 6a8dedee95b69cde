"""Classification with ONNX Runtime: the model version in use, hot swaps, batch prediction.

Plain Python: no gRPC. A swap loads the new session first and then replaces one reference,
so in-flight requests finish on the model they started with and every result names its version.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from marrowscope.core.db import DictPool
from marrowscope.core.errors import FailedPrecondition, InvalidArgument, NotFound
from marrowscope.core.images import decode_image
from marrowscope.core.model_registry import (
    ModelVersionRecord,
    get_model_version,
    list_model_versions,
)
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.preprocess import preprocess

from .settings import InferenceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    record: ModelVersionRecord
    session: ort.InferenceSession
    provider: str


@dataclass(frozen=True)
class CellPrediction:
    cell_id: str
    object_key: str
    probabilities: np.ndarray
    top1_class: str
    top1_probability: float
    top2_class: str
    top2_probability: float
    margin: float
    entropy: float


def summarise(
    cell_id: str, object_key: str, probabilities: np.ndarray, codes: list[str]
) -> CellPrediction:
    order = np.argsort(probabilities)[::-1]
    top1, top2 = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    return CellPrediction(
        cell_id, object_key, probabilities.astype(np.float32),
        codes[top1], float(probabilities[top1]), codes[top2], float(probabilities[top2]),
        float(probabilities[top1] - probabilities[top2]), float(-(p * np.log(p)).sum()),
    )  # fmt: skip


def choose_providers(prefer_cuda: bool) -> list[str]:
    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if prefer_cuda else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class Classifier:
    def __init__(self, pool: DictPool, store: ObjectStore, settings: InferenceSettings) -> None:
        self.pool = pool
        self.store = store
        self.settings = settings
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self._decoders = ThreadPoolExecutor(max_workers=settings.decode_workers)

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def load(self, version: str = "") -> LoadedModel:
        """Load ``version`` (the newest registered when empty) and switch to it."""
        if version:
            record = get_model_version(self.pool, version)
        else:
            newest = list_model_versions(self.pool, limit=1)
            if not newest:
                raise NotFound("no model version is registered yet; train one first")
            record = newest[0]
        current = self._current
        if current is not None and current.record.id == record.id:
            return current
        artifact = self.store.get(record.artifact_key)  # verified against its sha256 key
        options = ort.SessionOptions()
        if self.settings.intra_op_threads:
            options.intra_op_num_threads = self.settings.intra_op_threads
        session = ort.InferenceSession(
            artifact, sess_options=options, providers=choose_providers(self.settings.prefer_cuda)
        )
        loaded = LoadedModel(record, session, session.get_providers()[0])
        with self._swap_lock:
            self._current = loaded
        log.info("serving model %s on %s", record.name, loaded.provider)
        return loaded

    def try_load_newest(self) -> LoadedModel | None:
        try:
            return self.load()
        except NotFound:
            log.info("no model version registered yet; Classify answers FAILED_PRECONDITION")
            return None

    def classify(
        self, cells: list[tuple[str, str]], model_version: str = ""
    ) -> tuple[list[CellPrediction], ModelVersionRecord]:
        model = self._current
        if model is None:
            raise FailedPrecondition(
                "no model is loaded: train a model version and call LoadModel "
                "(`marrowscope up` trains a small one on first start)"
            )
        if model_version and model_version not in (model.record.id, model.record.name):
            raise FailedPrecondition(
                f"model version {model_version} requested but {model.record.name} is serving; "
                "call LoadModel first"
            )
        if len(cells) > self.settings.max_cells_per_request:
            raise InvalidArgument(
                f"{len(cells)} cells in one request; the limit is "
                f"{self.settings.max_cells_per_request} (use ClassifyStream for more)"
            )
        spec = model.record.input_spec

        def load(cell: tuple[str, str]) -> np.ndarray:
            return preprocess(decode_image(self.store.get(cell[1])).rgb, spec)

        inputs = list(self._decoders.map(load, cells))
        predictions: list[CellPrediction] = []
        codes = model.record.class_codes
        for start in range(0, len(inputs), self.settings.max_batch):
            batch = np.stack(inputs[start : start + self.settings.max_batch])
            probabilities = model.session.run(None, {"image": batch})[0]
            for (cell_id, key), probs in zip(
                cells[start : start + self.settings.max_batch], probabilities, strict=True
            ):
                predictions.append(summarise(cell_id, key, probs, codes))
        return predictions, model.record

    def close(self) -> None:
        self._decoders.shutdown(wait=False)
