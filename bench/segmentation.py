"""Segmentation on real smear fields and on a simulated other lab, for the default segmenter.

    python bench/segmentation.py [--algorithm stain-v4|stain-v3|unet-whole-field]

``unet-whole-field``: the shipped U-Net as it ran before the canonical scale, the whole field
squeezed to its input side. ``MARROWSCOPE_SEGMENTATION_UNET_MODEL=FILE`` scores another U-Net.

Per split (val, test) and per source image size: WBC recall and precision at IoU >= 0.5, mean
IoU of matched boxes, fields/s and cells/s. The same splits as another lab's camera would give
them (:mod:`marrowscope.segmentation.simulated_lab`: 2, 2.5 and 3x lower magnification,
vignetting, tinted background, stain hue and saturation, blur, JPEG), and as 1440x900 wide
frames at one magnification (red cells 65 px, white cells about 120-150 px): recall,
precision, fields not analysable and fields/s. The scale estimator: its error on fields
resampled by known factors and against the annotated red-cell boxes. The fields resized to
704x704 and centre-cell crops/s on ../shared/data/pbc. One thread, this machine.
Writes bench/results/segmentation.json (segmentation-<algorithm>.json for another algorithm).
"""

from __future__ import annotations

import argparse
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
from marrowscope.segmentation.canonical import prepare_field
from marrowscope.segmentation.catalogue import default_algorithms, shipped_unet_bytes
from marrowscope.segmentation.detection_eval import Box, DetectionScore, read_yolo_boxes
from marrowscope.segmentation.learned import UNetSegmenter
from marrowscope.segmentation.simulated_lab import (
    SCALE_FACTORS,
    other_lab_field,
    other_lab_mosaic,
)

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


Field = tuple[np.ndarray, list[Box], list[Box]]  # rgb, white-cell boxes, red-cell boxes


def load_split(split: str) -> list[Field]:
    fields = []
    for path in sorted((DATA / "txl-pbc" / split / "images").glob("*.jpg")):
        rgb = decode_image(path.read_bytes()).rgb
        label = path.parent.parent / "labels" / f"{path.stem}.txt"
        width, height = rgb.shape[1], rgb.shape[0]
        fields.append(
            (
                rgb,
                read_yolo_boxes(label, width, height, 0),
                read_yolo_boxes(label, width, height, 1),
            )
        )
    return fields


def score_fields(fields: list[Field], segmenter: SegmentationAlgorithm, desc: str) -> dict:
    """Recall / precision at IoU >= 0.5, fields not analysable (their cells still scored:
    a flagged field's misses count as misses), and fields/s on one thread."""
    score, seconds, flagged = DetectionScore(), 0.0, 0
    for rgb, wbc, _ in tqdm(fields, desc=desc, unit="field", leave=False):
        started = time.perf_counter()
        result = segmenter.segment(rgb)
        seconds += time.perf_counter() - started
        flagged += bool(result.report and not result.report.analysable)
        score.add(wbc, [tuple(float(v) for v in c.box) for c in result.cells])  # type: ignore[misc]
    return {
        "fields": len(fields),
        "size": f"{fields[0][0].shape[1]}x{fields[0][0].shape[0]}" if fields else "",
        "wbc_recall_iou50": round(score.recall, 4),
        "wbc_precision_iou50": round(score.precision, 4),
        "mean_iou_matched": round(score.mean_iou, 4),
        "true_wbc": score.true_positives + score.false_negatives,
        "fields_not_analysable": flagged,
        "fields_per_s": round(len(fields) / seconds, 2),
    }


def other_lab(fields: list[Field], factor: float) -> list[Field]:
    out = []
    for index, (rgb, wbc, red) in enumerate(fields):
        lab = other_lab_field(rgb, wbc, red, factor, seed=index)
        out.append((lab.rgb, lab.wbc, lab.red_cell_boxes))
    return out


def wide_frames(fields: list[Field], count: int = 24) -> list[Field]:
    """1440x900 frames of about a dozen fields each, red cells 65 px across. A frame comes
    from one lab: its fields are taken from one TXL-PBC source (one image size), so one
    stain, as one microscope gives; the sources take turns."""
    by_source: dict[tuple[int, ...], list[Field]] = defaultdict(list)
    for field in fields:
        by_source[field[0].shape].append(field)
    sources = [group for _, group in sorted(by_source.items()) if len(group) >= 16]
    frames = []
    for k in range(count):
        group = sources[k % len(sources)]
        start = (k // len(sources) * 16) % len(group)
        chunk = (group[start:] + group[:start])[:16]
        lab = other_lab_mosaic(chunk, red_cell_px=65.0, seed=k)
        frames.append((lab.rgb, lab.wbc, lab.red_cell_boxes))
    return frames


def scale_errors(fields: list[Field]) -> dict:
    """The red-cell diameter measured on fields resampled by known factors, against the same
    field at full size (the factor is the truth), and against the annotated red-cell boxes."""
    resampled: dict[str, list[float]] = defaultdict(list)
    annotated = []
    for rgb, _, red in tqdm(fields, desc="scale", unit="field", leave=False):
        native = prepare_field(rgb).scale
        if native is None:
            continue
        inside = [
            (w + h) / 2
            for x, y, w, h in red
            if x > 2 and y > 2 and x + w < rgb.shape[1] - 2 and y + h < rgb.shape[0] - 2
        ]
        if inside:
            annotated.append(native.red_cell_diameter_px / float(np.median(inside)))
        for factor in (0.75, 0.5, 0.35):
            size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
            small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
            found = prepare_field(small).scale
            ratio = (
                found.red_cell_diameter_px / (native.red_cell_diameter_px * factor)
                if found
                else 0.0
            )
            resampled[str(factor)].append(ratio)

    def summary(ratios: list[float]) -> dict:
        errors = np.abs(np.asarray(ratios) - 1.0)
        return {
            "fields": len(ratios),
            "median_abs_error": round(float(np.median(errors)), 4),
            "p90_abs_error": round(float(np.percentile(errors, 90)), 4),
            "share_within_10pct": round(float(np.mean(errors <= 0.10)), 4),
        }

    return {
        "resampled_by_factor": {f: summary(r) for f, r in resampled.items()},
        "resampled_all": summary([r for rs in resampled.values() for r in rs]),
        "against_annotated_red_cells": summary(annotated),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="", help="default: the service's default")
    args = parser.parse_args()
    if not (DATA / "txl-pbc").is_dir():
        print(f"no TXL-PBC data under {DATA}; nothing measured")
        return 1
    algorithms = default_algorithms()
    if args.algorithm == "unet-whole-field":
        algorithms[args.algorithm] = UNetSegmenter(shipped_unet_bytes())
    segmenter = algorithms[args.algorithm or next(iter(algorithms))]
    results: dict = {"algorithm": segmenter.version, "txl_pbc": {}, "other_lab": {}}
    for split in ("val", "test"):
        results["txl_pbc"][split] = detection(split, segmenter)
        fields = load_split(split)
        results["other_lab"][split] = {
            f"{factor:g}x": score_fields(other_lab(fields, factor), segmenter, f"{split} {factor}x")
            for factor in SCALE_FACTORS
        }
        results["other_lab"][split]["wide_1440x900"] = score_fields(
            wide_frames(fields), segmenter, f"{split} 1440x900"
        )
        if split == "val" or args.algorithm == "":
            results.setdefault("scale", {})[split] = scale_errors(fields)
    results["fields_704"] = throughput_704(segmenter)
    results["pbc_center_cell"] = center_crops(segmenter)
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
        for name, o in results["other_lab"][split].items():
            print(
                f"   other lab {name:>13}: recall {o['wbc_recall_iou50']:.3f} precision "
                f"{o['wbc_precision_iou50']:.3f} ({o['true_wbc']} WBCs, {o['fields']} fields "
                f"{o['size']}, {o['fields_not_analysable']} not analysable, "
                f"{o['fields_per_s']} fields/s)"
            )
    for split, s in results.get("scale", {}).items():
        a, b = s["resampled_all"], s["against_annotated_red_cells"]
        print(
            f"scale ({split}): resampled x0.75/0.5/0.35 median error {a['median_abs_error']:.3f}, "
            f"{100 * a['share_within_10pct']:.1f} % within 10 %; against annotated red cells "
            f"median {b['median_abs_error']:.3f}, {100 * b['share_within_10pct']:.1f} % within 10 %"
        )
    print(
        f"704x704 fields: {results['fields_704']['fields_per_s']} fields/s; "
        f"PBC centre-cell crops: {results['pbc_center_cell']['crops_per_s']}/s "
        f"({results['pbc_center_cell']['no_cell_found']} without a cell)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "segmentation.json" if not args.algorithm else f"segmentation-{args.algorithm}.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
