"""Classification with ONNX Runtime: several model versions served at once, batch prediction.

Plain Python: no gRPC. Every request names the version it wants, by name, id or alias
('production' for patient reports). Loaded sessions are kept in a cache bounded by count and
by artifact size, least recently used out; loading one version never changes what another
caller gets, and a request keeps the session it resolved from start to end. An alias is
re-read from the registry at most every ``alias_ttl_s`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from marrowscope.core.db import DictPool
from marrowscope.core.errors import FailedPrecondition, InvalidArgument, MarrowscopeError, NotFound
from marrowscope.core.images import ImageLimits
from marrowscope.core.model_registry import ALIASES, ModelVersionRecord, resolve
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
    ood_score: float | None = None  # distance from the training data (versions that export it)


def summarise(
    cell_id: str, object_key: str, outputs: np.ndarray, codes: list[str]
) -> CellPrediction:
    """One cell's result from its row of model outputs: the probabilities in ``codes`` order,
    then the distance score where the model exports one."""
    probabilities = outputs[: len(codes)]
    score = float(outputs[len(codes)]) if len(outputs) > len(codes) else None
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
        ood_score=score,
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
    """The loaded model versions and classification of stored cell images."""

    def __init__(self, pool: DictPool, store: ObjectStore, settings: InferenceSettings) -> None:
        self.pool = pool
        self.store = store
        self.settings = settings
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()  # by version id, LRU first
        self._records: dict[str, ModelVersionRecord] = {}  # by id and by name (immutable rows)
        self._aliases: dict[str, tuple[str, float]] = {}  # alias -> (version id, read at)
        self._lock = threading.Lock()  # guards the three dicts above
        self._load_lock = threading.Lock()  # one version loads at a time
        self._decoders = ThreadPoolExecutor(max_workers=settings.decode_workers)
        self.batcher = MicroBatcher(settings.max_batch, settings.max_wait_ms / 1000)
        self.pixels = PixelCache(settings.pixel_cache_mb * 1024 * 1024)
        self.limits = ImageLimits()

    def loaded(self) -> list[LoadedModel]:
        """The versions in memory, least recently used first."""
        with self._lock:
            return list(self._loaded.values())

    def record(self, version: str) -> ModelVersionRecord:
        """The registered version a name, id or alias stands for now."""
        if not version:
            raise InvalidArgument(
                "name a model version or an alias: 'production' for patient reports, "
                "or the version a campaign or an evaluation trained"
            )
        now = time.monotonic()
        with self._lock:
            if version in ALIASES:
                cached = self._aliases.get(version)
                if cached and now - cached[1] < self.settings.alias_ttl_s:
                    version = cached[0]
            if version in self._records:
                return self._records[version]
        with self.pool.connection() as conn:
            record = resolve(conn, version)
        with self._lock:
            if version in ALIASES:
                self._aliases[version] = (record.id, now)
            self._records[record.id] = self._records[record.name] = record
        return record

    def model(self, version: str) -> LoadedModel:
        """The loaded session of ``version`` (a name, id or alias), loading it if needed."""
        record = self.record(version)
        with self._lock:
            model = self._loaded.get(record.id)
            if model is not None:
                self._loaded.move_to_end(record.id)
                return model
        with self._load_lock:
            with self._lock:
                model = self._loaded.get(record.id)  # loaded while we waited
            if model is None:
                model = self._open(record)
                with self._lock:
                    self._loaded[record.id] = model
                    self._evict()
            return model

    def _open(self, record: ModelVersionRecord) -> LoadedModel:
        artifact = self.store.get(record.artifact_key)  # verified against its sha256 key
        session = open_model_session(artifact, self.settings)
        expected = INPUT_DTYPES[record.input_spec.dtype]
        if session.get_inputs()[0].type != expected:
            raise FailedPrecondition(
                f"model {record.name} takes {session.get_inputs()[0].type} but its registered "
                f"input spec says {expected}; the registry entry does not match its artifact, "
                "so it is not served"
            )
        loaded = LoadedModel(record, session, session.get_providers()[0])
        log.info("loaded model %s on %s", record.name, loaded.provider)
        return loaded

    def _evict(self) -> None:
        """Least recently used versions out until within both bounds (the newest stays)."""
        limit_bytes = self.settings.max_loaded_model_mb * 1024 * 1024
        while len(self._loaded) > 1 and (
            len(self._loaded) > self.settings.max_loaded_models
            or sum(m.record.artifact_bytes for m in self._loaded.values()) > limit_bytes
        ):
            version_id, evicted = self._loaded.popitem(last=False)
            log.info("unloaded model %s (least recently used)", evicted.record.name)

    def warm(self, version: str) -> LoadedModel:
        """Load ``version`` so its first request does not pay for it; changes nothing else."""
        return self.model(version)

    def try_warm_production(self) -> LoadedModel | None:
        """At start: load the production model if there is one (never 'the newest')."""
        try:
            return self.warm("production")
        except NotFound as exc:
            log.info("%s; Classify of 'production' answers NOT_FOUND until then", exc)
            return None

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
        """Classify ``(cell_id, object_key)`` pairs with one model version (a name, id or
        alias, resolved once for the whole request).

        Unreadable cells come back with ``error`` set; the rest are classified in micro-batches
        shared with concurrent requests.
        """
        if len(cells) > self.settings.max_cells_per_request:
            raise InvalidArgument(
                f"{len(cells)} cells in one request; the limit is "
                f"{self.settings.max_cells_per_request} (use ClassifyStream for more)"
            )
        model = self.model(model_version)  # this request's session, whatever loads meanwhile
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
            # One row per cell: the probabilities, then the distance score where exported.
            outputs = model.session.run(None, {"image": batch})
            if len(outputs) == 1:
                return outputs[0]
            return np.concatenate([outputs[0], outputs[1].reshape(-1, 1)], axis=1)

        return run

    def close(self) -> None:
        self.batcher.close()
        self._decoders.shutdown(wait=False)
