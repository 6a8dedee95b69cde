"""The promotion gate: a candidate for production measured against production on the locked
evaluation set (cells never trained on), with ONNX Runtime in this process.

Measured: accuracy, macro-F1 and per-class recall over the evaluation classes, and
calibration (expected calibration error of the top-1 probability, 10 bins). A drop beyond
the configured tolerance refuses the promotion, with the comparison table, unless forced
with a reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort

from marrowscope.core.evaluation import evaluate
from marrowscope.core.model_registry import ModelVersionRecord
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.preprocess import InputSpecData, decode_for_model
from marrowscope.core.taxonomy import Taxonomy

BATCH = 64


@dataclass(frozen=True)
class GateTolerance:
    """How much worse than production a candidate may be on the evaluation set."""

    accuracy_drop: float = 0.01
    macro_f1_drop: float = 0.01
    recall_drop: float = 0.05  # any one class
    ece_increase: float = 0.02


@dataclass(frozen=True, kw_only=True)
class GateMetrics:
    version: str
    cells: int
    accuracy: float
    macro_f1: float
    ece: float
    recall: dict[str, float]

    def to_json(self) -> dict:
        return asdict(self)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / max(1, len(confidence)))


class EvaluationCells:
    """The locked set's cells, read from the store once and decoded once per input spec
    (candidate and production usually share one)."""

    def __init__(self, store: ObjectStore, cells: list[tuple[str, str]]) -> None:
        self.blobs = [store.get(key) for key, _ in cells]
        self.truth = [code for _, code in cells]
        self._inputs: dict[InputSpecData, np.ndarray] = {}

    def inputs(self, spec: InputSpecData) -> np.ndarray:
        if spec not in self._inputs:
            self._inputs[spec] = np.stack([decode_for_model(b, spec) for b in self.blobs])
        return self._inputs[spec]


def measure(
    record: ModelVersionRecord,
    store: ObjectStore,
    cells: EvaluationCells,
    taxonomy: Taxonomy,
) -> GateMetrics:
    """``record``'s metrics on the evaluation ``cells``."""
    session = ort.InferenceSession(
        store.get(record.artifact_key), providers=["CPUExecutionProvider"]
    )
    x = cells.inputs(record.input_spec) if cells.truth else np.zeros((0,), np.uint8)
    probabilities = [
        session.run(None, {"image": x[start : start + BATCH]})[0]
        for start in range(0, len(cells.truth), BATCH)
    ]
    p = np.concatenate(probabilities) if probabilities else np.zeros((0, len(record.class_codes)))
    top = p.argmax(axis=1)
    predicted = [record.class_codes[i] for i in top]
    truth = cells.truth
    report = evaluate(truth, predicted, taxonomy)
    f1 = []
    for code in report["classes"]:
        r, q = report["recall"].get(code), report["precision"].get(code, 0.0)
        if r is not None:  # classes present in the evaluation set
            f1.append(2 * r * q / (r + q) if r + q else 0.0)
    correct = np.array(
        [
            taxonomy.for_evaluation(a) == taxonomy.for_evaluation(b)
            for a, b in zip(truth, predicted, strict=True)
        ],
        dtype=np.float64,
    )
    return GateMetrics(
        version=record.name,
        cells=len(truth),
        accuracy=round(report["accuracy"], 4),
        macro_f1=round(float(np.mean(f1)) if f1 else 0.0, 4),
        ece=round(expected_calibration_error(p.max(axis=1) if len(p) else p, correct), 4),
        recall={code: round(r, 4) for code, r in report["recall"].items()},
    )


def shortfalls(
    candidate: GateMetrics, production: GateMetrics, tolerance: GateTolerance
) -> list[str]:
    """Where the candidate is worse than production beyond the tolerance (empty: passes)."""
    out = []
    if production.accuracy - candidate.accuracy > tolerance.accuracy_drop:
        out.append(f"accuracy {candidate.accuracy:.3f} < {production.accuracy:.3f}")
    if production.macro_f1 - candidate.macro_f1 > tolerance.macro_f1_drop:
        out.append(f"macro-F1 {candidate.macro_f1:.3f} < {production.macro_f1:.3f}")
    if candidate.ece - production.ece > tolerance.ece_increase:
        out.append(f"calibration error {candidate.ece:.3f} > {production.ece:.3f}")
    for code, recall in production.recall.items():
        if recall - candidate.recall.get(code, 0.0) > tolerance.recall_drop:
            out.append(f"recall {code} {candidate.recall.get(code, 0.0):.3f} < {recall:.3f}")
    return out


def comparison_table(candidate: GateMetrics, production: GateMetrics | None) -> str:
    """The candidate's metrics beside production's, one line each (for people)."""
    head = f"{'':<12}{candidate.version:>20}" + (f"{production.version:>20}" if production else "")
    rows = [head]

    def line(name: str, a: float, b: float | None) -> str:
        return f"{name:<12}{a:>20.3f}" + (f"{b:>20.3f}" if b is not None else "")

    rows.append(line("accuracy", candidate.accuracy, production.accuracy if production else None))
    rows.append(line("macro-F1", candidate.macro_f1, production.macro_f1 if production else None))
    rows.append(line("ECE", candidate.ece, production.ece if production else None))
    for code in sorted(set(candidate.recall) | set(production.recall if production else {})):
        rows.append(
            line(
                f"recall {code}",
                candidate.recall.get(code, 0.0),
                production.recall.get(code, 0.0) if production else None,
            )
        )
    rows.append(f"({candidate.cells} cells of the locked evaluation set)")
    return "\n".join(rows)
