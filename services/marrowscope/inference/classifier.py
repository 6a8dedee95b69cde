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
from marrowscope.core.errors import FailedPrecondition, InvalidArgument, MarrowscopeError, NotFound
from marrowscope.core.images import ImageLimits
from marrowscope.core.model_registry import (
    ModelVersionRecord,
    get_model_version,
    list_model_versions,
)
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.onnx_providers import open_session
from marrowscope.core.preprocess import INPUT_DTYPES, InputSpecData, decode_for_model

from .batching import MicroBatcher, RunFn
from .pixel_cache import PixelCache
from .settings import InferenceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    record: ModelVersionRecord
    session: ort.InferenceSession
    provider: str


@dataclass(frozen=True, kw_only=True)
class CellPrediction:
    """One cell's result; ``error`` is set (and the scores empty) when it could not be read."""

    cell_id: str
    object_key: str
    probabilities: np.ndarray
    top1_class: str = ""
    top1_probability: float = 0.0
    top2_class: str = ""
    top2_probability: float = 0.0
    margin: float = 0.0
    entropy: float = 0.0
    error: str = ""


def summarise(
    cell_id: str, object_key: str, probabilities: np.ndarray, codes: list[str]
) -> CellPrediction:
    order = np.argsort(probabilities)[::-1]
    top1, top2 = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    return CellPrediction(
        cell_id=cell_id,
        object_key=object_key,
        probabilities=probabilities.astype(np.float32),
        top1_class=codes[top1],
        top1_probability=float(probabilities[top1]),
        top2_class=codes[top2],
        top2_probability=float(probabilities[top2]),
        margin=float(probabilities[top1] - probabilities[top2]),
        entropy=float(-(p * np.log(p)).sum()),
    )


def failed(cell_id: str, object_key: str, error: str) -> CellPrediction:
    return CellPrediction(
        cell_id=cell_id, object_key=object_key, probabilities=np.zeros(0, np.float32), error=error
    )


def open_model_session(artifact: bytes, settings: InferenceSettings) -> ort.InferenceSession:
    """A session for a classifier artifact as the service runs it: its thread settings, and
    CUDA where it loads (``settings.prefer_cuda``)."""
    options = ort.SessionOptions()
    if settings.intra_op_threads:
        options.intra_op_num_threads = settings.intra_op_threads
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0"
    )
    return open_session(artifact, options, settings.prefer_cuda, settings.cudnn_conv_algo_search)


class Classifier:
    """The serving model, its hot swap, and classification of stored cell images."""

    def __init__(self, pool: DictPool, store: ObjectStore, settings: InferenceSettings) -> None:
        self.pool = pool
        self.store = store
        self.settings = settings
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self._decoders = ThreadPoolExecutor(max_workers=settings.decode_workers)
        self.batcher = MicroBatcher(settings.max_batch, settings.max_wait_ms / 1000)
        self.pixels = PixelCache(settings.pixel_cache_mb * 1024 * 1024)
        self.limits = ImageLimits()

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def load(self, version: str = "") -> LoadedModel:
        """Load ``version`` (the newest registered when empty) and switch to it once loaded.

        Requests that started before the switch finish on the model they pinned.
        """
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
        session = open_model_session(artifact, self.settings)
        expected = INPUT_DTYPES[record.input_spec.dtype]
        if session.get_inputs()[0].type != expected:
            raise FailedPrecondition(
                f"model {record.name} takes {session.get_inputs()[0].type} but its registered "
                f"input spec says {expected}; the registry entry does not match its artifact, "
                "so the previous model stays in service"
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

    def pin(self, model_version: str = "") -> LoadedModel:
        """The model a request will use from start to end (checked against ``model_version``)."""
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
        return model

    def _tensor(self, key: str, spec: InputSpecData) -> np.ndarray:
        # Where the time goes (fetch / decode / preprocess / model) is measured by
        # bench/classifier.py; this is the same path as decode_for_model.
        return decode_for_model(self.store.get(key), spec, self.limits)

    def _load_cell(self, cell: tuple[str, str], spec: InputSpecData) -> np.ndarray | str:
        cached = self.pixels.get(cell[1], spec)
        if cached is not None:
            return cached
        try:
            tensor = self._tensor(cell[1], spec)
            self.pixels.put(cell[1], spec, tensor)
            return tensor
        except MarrowscopeError as error:  # missing key, corrupt or unsupported image
            return str(error)
        except Exception as error:  # noqa: BLE001 - one unreadable cell must not fail the batch
            log.warning("cell %s unreadable: %s", cell[0], type(error).__name__)
            return f"cannot read the image ({type(error).__name__})"

    def classify(
        self, cells: list[tuple[str, str]], model_version: str = ""
    ) -> tuple[list[CellPrediction], ModelVersionRecord]:
        """Classify ``(cell_id, object_key)`` pairs with one pinned model version.

        Unreadable cells come back with ``error`` set; the rest are classified in micro-batches
        shared with concurrent requests.
        """
        model = self.pin(model_version)
        if len(cells) > self.settings.max_cells_per_request:
            raise InvalidArgument(
                f"{len(cells)} cells in one request; the limit is "
                f"{self.settings.max_cells_per_request} (use ClassifyStream for more)"
            )
        spec = model.record.input_spec
        loaded = list(self._decoders.map(lambda c: self._load_cell(c, spec), cells))
        ready = [(i, t) for i, t in enumerate(loaded) if isinstance(t, np.ndarray)]
        futures = self.batcher.submit(model, self._runner(model), [t for _, t in ready])
        probabilities = dict(zip((i for i, _ in ready), futures, strict=True))
        codes = model.record.class_codes
        predictions: list[CellPrediction] = []
        for i, (cell_id, key) in enumerate(cells):
            if i in probabilities:
                predictions.append(summarise(cell_id, key, probabilities[i].result(), codes))
            else:
                predictions.append(failed(cell_id, key, str(loaded[i])))
        return predictions, model.record

    @staticmethod
    def _runner(model: LoadedModel) -> RunFn:
        def run(batch: np.ndarray) -> np.ndarray:
            return model.session.run(None, {"image": batch})[0]

        return run

    def close(self) -> None:
        self.batcher.close()
        self._decoders.shutdown(wait=False)
