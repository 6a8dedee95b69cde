"""The distance from the training data: exported in the graph exactly as computed in NumPy,
its threshold from held-out cells, larger for cells unlike the training cells, and in the
report as MODEL_NOT_VALIDATED when most of a specimen's cells lie outside."""

from __future__ import annotations

import uuid

import numpy as np
import onnxruntime as ort
import torch

from marrowscope.core.images import encode_png
from marrowscope.core.preprocess import InputSpecData, decode_for_model
from marrowscope.core.synthetic import make_cell
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.lis_api.report import (
    ClassifiedCell,
    Thresholds,
    build_differential,
    record_distance,
)
from marrowscope.training import ood
from marrowscope.training.model import PixelInput
from marrowscope.training.trainer import HyperParameters, train

SPEC = InputSpecData(size=32)
CODES = ["LY", "SEG", "EO", "MB"]


def pixels(seed: int, per_class: int = 12) -> tuple[np.ndarray, np.ndarray]:
    x = [
        decode_for_model(encode_png(make_cell(c, i, seed=seed).rgb), SPEC)
        for c in CODES
        for i in range(per_class)
    ]
    y = [k for k in range(len(CODES)) for _ in range(per_class)]
    return np.stack(x), np.array(y)


def test_the_exported_distance_is_the_mahalanobis_score_and_separates_other_images() -> None:
    x, y = pixels(seed=1)
    xv, yv = pixels(seed=2, per_class=6)
    trained = train(
        x,
        y,
        xv,
        yv,
        len(CODES),
        SPEC,
        HyperParameters(epochs=6, batch_size=16, input_size=32, width=8),
    )
    threshold = trained.metrics["ood_threshold"]
    session = ort.InferenceSession(trained.onnx_bytes, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities", "ood_score"]
    probabilities, score = session.run(None, {"image": xv})
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # Held-out cells of the same source: about 95 % within the threshold by construction.
    assert np.mean(score <= threshold) >= 0.9
    # Other images: colour-inverted and noise cells lie much farther out.
    rng = np.random.default_rng(0)
    inverted = (255 - xv).astype(np.uint8)
    noise = rng.integers(0, 256, xv.shape, dtype=np.uint8)
    _, inverted_score = session.run(None, {"image": inverted})
    _, noise_score = session.run(None, {"image": noise})
    assert np.median(inverted_score) > threshold and np.median(noise_score) > threshold
    # The graph's score is the NumPy definition on the same features.
    features = ood.features_of(
        _state_model(trained), torch.from_numpy(xv), PixelInput(SPEC.mean, SPEC.std)
    )
    means, precision = ood.fit(
        ood.features_of(
            _state_model(trained), torch.from_numpy(x), PixelInput(SPEC.mean, SPEC.std)
        ),
        y,
        len(CODES),
    )
    np.testing.assert_allclose(score, ood.scores(features, means, precision), rtol=2e-3, atol=2e-3)


def _state_model(trained: object) -> ood.SECNN:
    import io

    from marrowscope.training.model import build_model

    model = build_model("se_cnn", len(CODES), width=8)
    model.load_state_dict(torch.load(io.BytesIO(trained.state_dict_bytes), weights_only=True))  # type: ignore[attr-defined]
    assert isinstance(model, ood.SECNN)
    return model.eval()


def test_most_cells_outside_flag_the_report_and_excluded_cells_do_not_count() -> None:
    taxonomy = load_taxonomy("paper17")

    def cells(scores: list[float], excluded: str = "") -> list[ClassifiedCell]:
        return [
            ClassifiedCell(str(uuid.uuid4()), "SEG", 0.9, 0.8, excluded=excluded, ood_score=s)
            for s in scores
        ]

    inside = cells([1.0] * 300)
    body = build_differential(inside, taxonomy, Thresholds())
    record_distance(body, inside, 5.0, 0.5)
    assert body["ood"]["share_outside"] == 0.0
    assert "MODEL_NOT_VALIDATED" not in {f["code"] for f in body["flags"]}

    other_lab = cells([9.0] * 200 + [1.0] * 100) + cells([1.0] * 400, excluded="touches_border")
    body = build_differential(other_lab, taxonomy, Thresholds())
    record_distance(body, other_lab, 5.0, 0.5)
    record_distance(body, other_lab, 5.0, 0.5)  # recorded once
    flags = [f for f in body["flags"] if f["code"] == "MODEL_NOT_VALIDATED"]
    assert len(flags) == 1 and "not validated for these images" in flags[0]["text"]
    assert body["ood"]["cells_scored"] == 300 and body["ood"]["cells_outside"] == 200

    unscored = cells([None] * 10)  # type: ignore[list-item]
    body = build_differential(unscored, taxonomy, Thresholds())
    record_distance(body, unscored, None, 0.5)
    assert body["ood"] == {"available": False}
