"""The learned field U-Net against stain-v3 on the same TXL-PBC fields, two-fold.

    python bench/segmentation_unet.py [--steps 1200] [--image-size 128] [--width 8] [--seed 0]
        [--augment | --no-augment] [--threads 1]

TXL-PBC has two annotated splits. Fold 1 trains on val (a seeded fifth held out to pick the
checkpoint) and scores test; fold 2 trains on test and scores val. So every figure is on fields
the scored model never saw, and stain-v3 (no weights) is scored on the same fields. Both folds
train for about the same number of optimiser steps: test has half as many fields as val, so
fold 2 runs twice the epochs (with equal epochs its model was still improving at the end). The
U-Net trains with the scale, blur, vignetting, tint, hue / saturation and JPEG augmentation of
``UNetTraining.augment`` with ``--augment`` (not the default: on val it did not help). Each fold also scores both segmenters on a
synthetic "other lab" version of the scored split (``other_lab_field``: field i downscaled by
each of ``SCALE_FACTORS``, seed i; blurred, tinted, restained, vignetted, JPEG-compressed).
Also: fields/s at 704x704 and centre-cell crops/s on PBC for the fold-1 model, one thread.
Writes bench/results/segmentation_unet.json and the two models as bench/results/*.onnx.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace

from segmentation import DATA, RESULTS, center_crops, detection, throughput_704
from tqdm import tqdm

from marrowscope.core.images import decode_image
from marrowscope.segmentation.algorithm import SegmentationAlgorithm
from marrowscope.segmentation.detection_eval import DetectionScore, read_yolo_boxes
from marrowscope.segmentation.learned import UNetSegmenter
from marrowscope.segmentation.simulated_lab import SCALE_FACTORS, LabField, other_lab_field
from marrowscope.segmentation.stain import StainSegmenter
from marrowscope.training.field_unet import (
    UNetTraining,
    load_yolo_fields,
    split_fields,
    train_field_unet,
)


def train(split: str, params: UNetTraining, steps: int) -> tuple[bytes, dict]:
    fields = load_yolo_fields(DATA / "txl-pbc" / split)
    training, validation = split_fields(fields, params.seed)
    batches = -(-len(training) // params.batch_size)
    params = replace(params, epochs=-(-steps // batches))
    with tqdm(total=params.epochs, desc=f"U-Net on {split}", unit="epoch") as bar:
        result = train_field_unet(
            training, validation, params, lambda point: (bar.set_postfix(point), bar.update(1))
        )
    return result.onnx_bytes, {
        "trained_on": split,
        "train_fields": len(training),
        "epochs": params.epochs,
        "checkpoint_fields": len(validation),
        "best_epoch": result.best_epoch,
        "minutes": round(result.seconds / 60, 1),
        "train_images_per_s": round(result.images_per_s, 1),
    }


def other_lab_fields(split: str) -> dict[float, list[LabField]]:
    """The split's fields as the simulated other lab shows them, per downscale factor; field i
    (sorted by name) with seed i."""
    folder = DATA / "txl-pbc" / split
    lab: dict[float, list[LabField]] = {factor: [] for factor in SCALE_FACTORS}
    for i, path in enumerate(sorted((folder / "images").glob("*.jpg"))):
        image = decode_image(path.read_bytes())
        label = folder / "labels" / f"{path.stem}.txt"
        wbc = read_yolo_boxes(label, image.width, image.height, 0)
        rbc = read_yolo_boxes(label, image.width, image.height, 1)
        for factor in SCALE_FACTORS:
            lab[factor].append(other_lab_field(image.rgb, wbc, rbc, downscale=factor, seed=i))
    return lab


def lab_detection(fields: list[LabField], segmenter: SegmentationAlgorithm) -> dict:
    """WBC recall and precision at IoU >= 0.5 on in-memory fields, as ``detection`` scores
    the real ones."""
    score, seconds = DetectionScore(), 0.0
    for field in fields:
        started = time.perf_counter()
        found = segmenter.segment(field.rgb).cells
        seconds += time.perf_counter() - started
        score.add(field.wbc, [tuple(float(v) for v in c.box) for c in found])
    return {
        "fields": len(fields),
        "wbc_recall_iou50": round(score.recall, 4),
        "wbc_precision_iou50": round(score.precision, 4),
        "mean_iou_matched": round(score.mean_iou, 4),
        "true_wbc": score.true_positives + score.false_negatives,
        "fields_per_s": round(len(fields) / seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200, help="optimiser steps per fold")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="scale, blur, vignetting, tint, hue / saturation and JPEG augmentation",
    )
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads for training")
    args = parser.parse_args()
    if not (DATA / "txl-pbc").is_dir():
        print(f"no TXL-PBC data under {DATA}; nothing measured")
        return 1
    params = UNetTraining(
        input_size=args.image_size,
        width=args.width,
        seed=args.seed,
        augment=args.augment,
        threads=args.threads,
    )
    stain = StainSegmenter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict = {"parameters": {**asdict(params), "steps": args.steps}, "folds": {}}
    fold_one: UNetSegmenter | None = None
    for trained_on, scored in (("val", "test"), ("test", "val")):
        model, training = train(trained_on, params, args.steps)
        (RESULTS / f"field_unet_{trained_on}.onnx").write_bytes(model)
        unet = UNetSegmenter(model)
        fold_one = fold_one or unet
        lab = other_lab_fields(scored)
        results["folds"][scored] = {
            "training": training,
            "algorithm": unet.version,
            "unet": detection(scored, unet),
            stain.version: detection(scored, stain),
            "other_lab": {
                str(factor): {
                    "unet": lab_detection(fields, unet),
                    stain.version: lab_detection(fields, stain),
                }
                for factor, fields in lab.items()
            },
        }
    assert fold_one is not None
    results["unet_fields_704"] = throughput_704(fold_one)
    results["unet_pbc_center_cell"] = center_crops(fold_one)
    for scored, fold in results["folds"].items():
        print(
            f"scored on {scored} (U-Net trained on {fold['training']['trained_on']}, best "
            f"epoch {fold['training']['best_epoch']} of {fold['training']['epochs']}, "
            f"{fold['training']['minutes']} min):"
        )
        for name in ("unet", stain.version):
            r = fold[name]
            print(
                f"  {name:>9}: WBC recall {r['wbc_recall_iou50']:.3f} precision "
                f"{r['wbc_precision_iou50']:.3f} mean IoU {r['mean_iou_matched']:.3f} "
                f"({r['true_wbc']} WBCs, {r['fields']} fields, {r['fields_per_s']} fields/s)"
            )
        for factor, by_name in fold["other_lab"].items():
            print(f"  other lab, downscaled {factor}x:")
            for name, r in by_name.items():
                print(
                    f"    {name:>9}: WBC recall {r['wbc_recall_iou50']:.3f} precision "
                    f"{r['wbc_precision_iou50']:.3f} mean IoU {r['mean_iou_matched']:.3f} "
                    f"({r['fields_per_s']} fields/s)"
                )
    print(
        f"U-Net at 704x704: {results['unet_fields_704']['fields_per_s']} fields/s; "
        f"PBC centre-cell crops: {results['unet_pbc_center_cell']['crops_per_s']}/s "
        f"({results['unet_pbc_center_cell']['no_cell_found']} without a cell)"
    )
    (RESULTS / "segmentation_unet.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS / 'segmentation_unet.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
