"""Benchmarks that print figures (JSON copies under bench/results/). Not timed tests.

Measured here so far: image intake (decode + the classifier's preprocessing) on the real PBC
cells in ../shared/data/pbc, synthetic data generation, and the foundation's threshold
segmentation on the real TXL-PBC fields. Skips a data set, saying so, when it is absent.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from marrowscope.core.images import decode_image
from marrowscope.core.preprocess import InputSpecData, preprocess
from marrowscope.core.synthetic import make_cell, make_field, synthetic_classes
from marrowscope.segmentation.algorithm import ThresholdSegmenter

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"


def timed(fn, items):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    out = [fn(item) for item in items]
    return out, time.perf_counter() - started


def bench_intake(limit: int = 800) -> dict:
    files = sorted((DATA / "pbc").glob("*/*.jpg"))[::10][:limit]
    if not files:
        return {"skipped": f"no PBC images under {DATA / 'pbc'}"}
    blobs = [f.read_bytes() for f in files]
    spec = InputSpecData(size=96)
    decoded, decode_s = timed(decode_image, blobs)
    _, prep_s = timed(lambda d: preprocess(d.rgb, spec), decoded)
    return {
        "images": len(blobs),
        "decode_per_s": round(len(blobs) / decode_s, 1),
        "preprocess_96px_per_s": round(len(blobs) / prep_s, 1),
        "mean_bytes": int(np.mean([len(b) for b in blobs])),
    }


def bench_synthetic(n: int = 4) -> dict:
    codes = synthetic_classes()
    _, cell_s = timed(lambda c: make_cell(c, 0), codes * n)
    _, field_s = timed(lambda i: make_field(i), range(n))
    return {
        "cells_per_s": round(len(codes) * n / cell_s, 1),
        "fields_704_per_s": round(n / field_s, 2),
    }


def _iou(a, b) -> float:  # type: ignore[no-untyped-def]
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def bench_segmentation_txl(split: str = "test") -> dict:
    images = sorted((DATA / "txl-pbc" / split / "images").glob("*.jpg"))
    if not images:
        return {"skipped": f"no TXL-PBC images under {DATA / 'txl-pbc' / split}"}
    segmenter = ThresholdSegmenter()
    tp = fp = fn = 0
    seconds = 0.0
    for path in images:
        image = decode_image(path.read_bytes())
        h, w = image.height, image.width
        label = path.parent.parent / "labels" / f"{path.stem}.txt"
        truth = []
        for line in label.read_text().split("\n") if label.exists() else []:
            parts = line.split()
            if len(parts) == 5 and parts[0] == "0":
                cx, cy, bw, bh = (float(v) for v in parts[1:])
                truth.append(((cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h))
        started = time.perf_counter()
        boxes = [c.box for c in segmenter.segment(image.rgb).cells]
        seconds += time.perf_counter() - started
        matched = sum(any(_iou(t, b) >= 0.5 for b in boxes) for t in truth)
        tp += matched
        fn += len(truth) - matched
        fp += sum(not any(_iou(t, b) >= 0.5 for t in truth) for b in boxes)
    return {
        "split": split,
        "fields": len(images),
        "wbc_recall_iou50": round(tp / max(tp + fn, 1), 3),
        "wbc_precision_iou50": round(tp / max(tp + fp, 1), 3),
        "fields_per_s": round(len(images) / seconds, 2),
        "algorithm": segmenter.version,
    }


def main() -> int:
    results = {
        "machine": {
            "python": sys.version.split()[0],
            "processor": platform.processor() or platform.machine(),
        },
        "intake_pbc": bench_intake(),
        "synthetic": bench_synthetic(),
        "segmentation_txl_pbc": bench_segmentation_txl(),
    }
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "foundation.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
