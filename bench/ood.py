"""Does the distance score flag images the model was not made for? On real cells.

    python bench/ood.py [--train-per-class 250] [--epochs 12] [--image-size 64]

An SE-CNN trained on PBC (CellaVision) cells of a seeded split, as the product trains it
(the score and its threshold come out of `train`). Its exported ``ood_score`` is compared on:
- held-out PBC test cells (the source it was made for: negatives);
- the same test cells as "another lab's camera" would give them: 2.5x lower resolution,
  vignetting, a pinkish cast and JPEG quality 40; and a milder shift (1.5x, JPEG 75);
- white-cell crops that stain-v3 cuts from TXL-PBC fields (another source and framing).
For each: AUROC against the PBC test cells, the share beyond the model's threshold, and the
model's accuracy where labels exist. Writes bench/results/ood.json.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageFilter

from marrowscope.core.datasets import scan_image_folder, split_per_class
from marrowscope.core.images import decode_image, encode_png
from marrowscope.core.preprocess import InputSpecData, decode_for_model
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.segmentation.algorithm import crop_cell
from marrowscope.segmentation.stain import StainSegmenter
from marrowscope.training.trainer import HyperParameters, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"


def shifted(data: bytes, scale: float, vignette: float, cast: float, quality: int) -> bytes:
    """A CellaVision image as another camera gives it: ``scale`` times lower resolution,
    vignetting, a pink cast of strength ``cast`` and JPEG ``quality``."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = image.size
    small = image.resize((int(w / scale), int(h / scale)), Image.Resampling.BILINEAR)
    image = small.resize((w, h), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(1))
    rgb = np.asarray(image, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    rgb *= (1.0 - vignette * np.clip(r, 0, 1.4) ** 2)[..., None]
    rgb = rgb * (1 + cast * np.array([0.08, -0.08, 0.0])) + cast * np.array([12.0, 0.0, 6.0])
    out = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def other_camera(data: bytes) -> bytes:
    """Strong: 2.5x lower resolution, vignetting, pink cast, JPEG 40."""
    return shifted(data, 2.5, 0.35, 1.0, 40)


def mild_shift(data: bytes) -> bytes:
    """Mild: 1.5x lower resolution, light vignetting, half the cast, JPEG 75."""
    return shifted(data, 1.5, 0.1, 0.5, 75)


def txl_crops(limit: int) -> list[bytes]:
    segmenter, crops = StainSegmenter(), []
    for path in sorted((DATA / "txl-pbc" / "test" / "images").glob("*.jpg")):
        rgb = decode_image(path.read_bytes()).rgb
        crops += [encode_png(crop_cell(rgb, c)) for c in segmenter.segment(rgb).cells]
        if len(crops) >= limit:
            break
    return crops[:limit]


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outside score > an inside score), ties half (Mann-Whitney)."""
    scores = np.concatenate([inside, outside])
    ranks = np.empty(len(scores))
    order = scores.argsort(kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    positive = ranks[len(inside) :].sum() - len(outside) * (len(outside) + 1) / 2
    return float(positive / (len(inside) * len(outside)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--test-cells", type=int, default=600)
    args = parser.parse_args()
    if not (DATA / "pbc").is_dir():
        print(f"no PBC data under {DATA}; nothing measured")
        return 1
    folder = scan_image_folder(DATA / "pbc")
    taxonomy = load_taxonomy(folder.taxonomy)
    split = split_per_class(folder.images, 0.10, 0.20, seed=0)
    rng = np.random.default_rng(0)
    by_class: dict[str, list] = {}
    for image in split.train:
        by_class.setdefault(image.class_code, []).append(image)
    train_images = [i for imgs in by_class.values() for i in imgs[: args.train_per_class]]
    test_images = list(rng.permutation(np.array(split.test, dtype=object)))[: args.test_cells]
    spec = InputSpecData(size=args.image_size)

    def arrays(images: list, convert=lambda b: b) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        x = np.stack([decode_for_model(convert(i.path.read_bytes()), spec) for i in images])
        return x, np.array([taxonomy.codes.index(i.class_code) for i in images])

    started = time.perf_counter()
    x_train, y_train = arrays(train_images)
    x_val, y_val = arrays(split.validation)
    hyper = HyperParameters(
        epochs=args.epochs,
        batch_size=32,
        input_size=args.image_size,
        width=args.width,
        lr_schedule="cosine",
    )
    trained = train(x_train, y_train, x_val, y_val, len(taxonomy.codes), spec, hyper)
    print(f"trained on {len(x_train)} PBC cells in {time.perf_counter() - started:.0f} s")
    threshold = trained.metrics["ood_threshold"]
    session = ort.InferenceSession(trained.onnx_bytes, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs = [session.run(None, {"image": x[i : i + 256]}) for i in range(0, len(x), 256)]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    x_test, y_test = arrays(test_images)
    x_camera, _ = arrays(test_images, other_camera)
    x_mild, _ = arrays(test_images, mild_shift)
    crops = txl_crops(args.test_cells)
    x_txl = np.stack([decode_for_model(c, spec) for c in crops])
    p_test, s_test = run(x_test)
    results: dict = {
        "train_cells": len(x_train),
        "epochs": args.epochs,
        "image_size": args.image_size,
        "threshold": round(threshold, 4),
        "pbc_test": {
            "cells": len(x_test),
            "accuracy": round(float((p_test.argmax(1) == y_test).mean()), 4),
            "share_beyond_threshold": round(float((s_test > threshold).mean()), 4),
        },
    }
    for name, x, labels in (
        ("pbc_mild_shift", x_mild, y_test),
        ("pbc_other_camera", x_camera, y_test),
        ("txl_pbc_stain_v3_crops", x_txl, None),
    ):
        p, s = run(x)
        entry = {
            "cells": len(x),
            "auroc_vs_pbc_test": round(auroc(s_test, s), 4),
            "share_beyond_threshold": round(float((s > threshold).mean()), 4),
            "median_top1_probability": round(float(np.median(p.max(1))), 4),
        }
        if labels is not None:
            entry["accuracy"] = round(float((p.argmax(1) == labels).mean()), 4)
        results[name] = entry
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ood.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS / 'ood.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
