"""Segmentation on real smear fields: white-cell detection on TXL-PBC and centre-cell crops on PBC.

    python bench/segmentation.py

Per split (val, test) and per source image size: WBC recall and precision at IoU >= 0.5, mean
IoU of matched boxes, fields/s and cells/s; the same fields resized to 704x704 (the paper's
field size) for throughput; centre-cell crops/s on ../shared/data/pbc. One thread, this machine.
Writes bench/results/segmentation.json.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from marrowscope.core.images import decode_image
from marrowscope.segmentation.algorithm import SegmentationAlgorithm, crop_cell
from marrowscope.segmentation.detection_eval import DetectionScore, read_yolo_boxes
from marrowscope.segmentation.stain import StainSegmenter

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"


def detection(split: str, segmenter: SegmentationAlgorithm) -> dict:
    images = sorted((DATA / "txl-pbc" / split / "images").glob("*.jpg"))
    overall = DetectionScore()
    by_size: dict[str, DetectionScore] = defaultdict(DetectionScore)
    seconds: dict[str, float] = defaultdict(float)
    fields: dict[str, int] = defaultdict(int)
    cells: dict[str, int] = defaultdict(int)
    for path in tqdm(images, desc=f"txl-pbc {split}", unit="field"):
        image = decode_image(path.read_bytes())
        size = f"{image.width}x{image.height}"
        truth = read_yolo_boxes(
            path.parent.parent / "labels" / f"{path.stem}.txt", image.width, image.height
        )
        started = time.perf_counter()
        found = segmenter.segment(image.rgb).cells
        seconds[size] += time.perf_counter() - started
        boxes = [tuple(float(v) for v in c.box) for c in found]
        overall.add(truth, boxes)  # type: ignore[arg-type]
        by_size[size].add(truth, boxes)  # type: ignore[arg-type]
        fields[size] += 1
        cells[size] += len(found)

    def figures(score: DetectionScore) -> dict:
        return {
            "wbc_recall_iou50": round(score.recall, 4),
            "wbc_precision_iou50": round(score.precision, 4),
            "mean_iou_matched": round(score.mean_iou, 4),
            "true_wbc": score.true_positives + score.false_negatives,
        }

    total_s = sum(seconds.values())
    return {
        "fields": len(images),
        **figures(overall),
        "fields_per_s": round(len(images) / total_s, 2),
        "cells_per_s": round(sum(cells.values()) / total_s, 2),
        "by_size": {
            size: {
                **figures(by_size[size]),
                "fields": fields[size],
                "fields_per_s": round(fields[size] / seconds[size], 2),
            }
            for size in sorted(by_size)
        },
    }


def throughput_704(segmenter: SegmentationAlgorithm, limit: int = 60) -> dict:
    paths = sorted((DATA / "txl-pbc" / "test" / "images").glob("*.jpg"))[:limit]
    fields = [np.asarray(Image.open(p).convert("RGB").resize((704, 704))) for p in paths]
    started = time.perf_counter()
    found = sum(len(segmenter.segment(f).cells) for f in fields)
    seconds = time.perf_counter() - started
    return {
        "fields": len(fields),
        "fields_per_s": round(len(fields) / seconds, 2),
        "cells_per_s": round(found / seconds, 2),
    }


def center_crops(segmenter: SegmentationAlgorithm, limit: int = 400) -> dict:
    paths = sorted((DATA / "pbc").glob("*/*.jpg"))[:: max(1, 8492 // limit)][:limit]
    images = [decode_image(p.read_bytes()).rgb for p in paths]
    started = time.perf_counter()
    missing = 0
    for rgb in images:
        region = segmenter.center_cell(rgb)
        if region is None:
            missing += 1
        else:
            crop_cell(rgb, region)
    seconds = time.perf_counter() - started
    return {
        "images": len(images),
        "crops_per_s": round(len(images) / seconds, 1),
        "no_cell_found": missing,
    }


def main() -> int:
    if not (DATA / "txl-pbc").is_dir():
        print(f"no TXL-PBC data under {DATA}; nothing measured")
        return 1
    segmenter = StainSegmenter()
    results = {
        "algorithm": segmenter.version,
        "txl_pbc": {split: detection(split, segmenter) for split in ("val", "test")},
        "fields_704": throughput_704(segmenter),
        "pbc_center_cell": center_crops(segmenter),
    }
    for split, r in results["txl_pbc"].items():
        print(
            f"{split}: WBC recall {r['wbc_recall_iou50']:.3f} precision "
            f"{r['wbc_precision_iou50']:.3f} mean IoU {r['mean_iou_matched']:.3f} "
            f"({r['true_wbc']} WBCs, {r['fields']} fields, {r['fields_per_s']} fields/s)"
        )
        for size, s in r["by_size"].items():
            print(
                f"   {size:>9}: recall {s['wbc_recall_iou50']:.3f} precision "
                f"{s['wbc_precision_iou50']:.3f} ({s['fields']} fields, {s['fields_per_s']}/s)"
            )
    print(
        f"704x704 fields: {results['fields_704']['fields_per_s']} fields/s; "
        f"PBC centre-cell crops: {results['pbc_center_cell']['crops_per_s']}/s"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "segmentation.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS / 'segmentation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
