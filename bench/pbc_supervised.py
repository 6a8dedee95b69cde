"""Fully supervised SE-CNN on the real PBC cells: the ceiling the SSL campaigns are compared with.

    python bench/pbc_supervised.py [--image-size 64] [--epochs 30] [--width 16]

A fixed, seeded per-class split (70 % train, 10 % validation, 20 % test) of ../shared/data/pbc;
training with the paper's recipe (SGD momentum, lr 0.01, rotation / flip / shift augmentation,
best validation checkpoint), the exported ONNX model evaluated on the test split. Prints the
per-class table and writes bench/results/pbc_supervised.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from marrowscope.core.datasets import LabelledImage, scan_image_folder, split_per_class
from marrowscope.core.evaluation import evaluate, format_report
from marrowscope.core.images import decode_image
from marrowscope.core.preprocess import InputSpecData, decode_for_model, preprocess
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.segmentation.algorithm import crop_cell
from marrowscope.segmentation.stain import StainSegmenter
from marrowscope.training.trainer import HyperParameters, train

ROOT = Path(__file__).resolve().parents[1]
PBC = ROOT.parent / "shared" / "data" / "pbc"
RESULTS = ROOT / "bench" / "results"
SEGMENTER = StainSegmenter()


def centre_crop_tensor(data: bytes, spec: InputSpecData) -> np.ndarray:
    """The paper's crop: the central cell alone on black (centre-cell mode), then the model
    input. Falls back to the whole image when no nucleus is found."""
    rgb = decode_image(data).rgb
    region = SEGMENTER.center_cell(rgb)
    return preprocess(crop_cell(rgb, region) if region else rgb, spec)


def load(
    images: list[LabelledImage],
    spec: InputSpecData,
    codes: list[str],
    desc: str,
    centre: bool = False,
):  # type: ignore[no-untyped-def]
    convert = centre_crop_tensor if centre else decode_for_model
    with ThreadPoolExecutor(max_workers=2) as pool:
        x = list(
            tqdm(
                pool.map(lambda i: convert(i.path.read_bytes(), spec), images),
                total=len(images),
                desc=desc,
                unit="img",
            )
        )
    return np.stack(x), np.array([codes.index(i.class_code) for i in images], np.int64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr-schedule", default="cosine", choices=["constant", "cosine"])
    parser.add_argument(
        "--center-crop",
        action="store_true",
        help="train and test on centre-cell crops (the paper's black background)",
    )
    args = parser.parse_args()
    if not PBC.is_dir():
        print(f"no PBC data at {PBC}; nothing measured")
        return 1
    folder = scan_image_folder(PBC)
    taxonomy = load_taxonomy(folder.taxonomy)
    split = split_per_class(folder.images, 0.10, 0.20, seed=args.seed)
    spec = InputSpecData(size=args.image_size)
    x_train, y_train = load(split.train, spec, taxonomy.codes, "train", args.center_crop)
    x_val, y_val = load(split.validation, spec, taxonomy.codes, "validation", args.center_crop)
    x_test, y_test = load(split.test, spec, taxonomy.codes, "test", args.center_crop)
    hyper = HyperParameters(
        epochs=args.epochs,
        batch_size=32,
        input_size=args.image_size,
        width=args.width,
        seed=args.seed,
        lr_schedule=args.lr_schedule,
    )
    bar = tqdm(total=args.epochs, desc="epochs", unit="epoch")

    def on_epoch(e) -> None:  # type: ignore[no-untyped-def]
        bar.update(1)
        bar.set_postfix(loss=f"{e.train_loss:.3f}", val=f"{e.validation_accuracy:.3f}")

    started = time.perf_counter()
    trained = train(
        x_train, y_train, x_val, y_val, len(taxonomy.codes), spec, hyper, on_epoch=on_epoch
    )
    seconds = time.perf_counter() - started
    bar.close()
    session = ort.InferenceSession(trained.onnx_bytes, providers=["CPUExecutionProvider"])
    predicted = np.concatenate(
        [
            session.run(None, {"image": x_test[i : i + 256]})[0].argmax(1)
            for i in range(0, len(x_test), 256)
        ]
    )
    report = evaluate(
        [taxonomy.codes[k] for k in y_test], [taxonomy.codes[k] for k in predicted], taxonomy
    )
    print(format_report(report))
    hard = {c: round(report["recall"].get(c, 0.0), 4) for c in ("MMY", "MY", "BNE", "SNE")}
    print("recall of the hard classes:", hard)
    result = {
        "data": "PBC (CellaVision DM96), 11 classes",
        "taxonomy": taxonomy.name,
        "split": {
            "train": len(split.train),
            "validation": len(split.validation),
            "test": len(split.test),
            "seed": args.seed,
        },
        "image_size": args.image_size,
        "epochs": args.epochs,
        "width": args.width,
        "lr_schedule": args.lr_schedule,
        "center_crop": args.center_crop,
        "best_epoch": trained.best_epoch,
        "training_seconds": round(seconds, 1),
        "training_images_per_s": round(len(x_train) * args.epochs / seconds, 1),
        "test": report,
        "hard_class_recall": hard,
        "learning_curve": [e.to_json() for e in trained.curve],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pbc_supervised.json").write_text(json.dumps(result, indent=2))
    print(
        f"test accuracy {report['accuracy']:.4f} at {args.image_size}px, {args.epochs} epochs "
        f"({seconds / 60:.1f} min); wrote {RESULTS / 'pbc_supervised.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
