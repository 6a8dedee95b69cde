"""``marrowscope train-segmenter``: the field U-Net trained on YOLO-annotated fields, locally.

Writes the ONNX model (what ``MARROWSCOPE_SEGMENTATION_UNET_MODEL`` and ``marrowscope segment
--model`` take) and, beside it, ``<name>.json`` with the training parameters and learning curve.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from tqdm import tqdm

from marrowscope.core.errors import MarrowscopeError
from marrowscope.training.field_unet import (
    UNetTraining,
    load_yolo_fields,
    split_fields,
    train_field_unet,
)


def train_segmenter_cli(args: argparse.Namespace) -> int:
    fields = load_yolo_fields(args.data)
    if args.validation:
        train, validation = fields, load_yolo_fields(args.validation)
    else:
        if len(fields) < 5:
            raise MarrowscopeError(
                "need at least 5 fields to hold a fifth out; or pass --validation"
            )
        train, validation = split_fields(fields, args.seed)
    params = UNetTraining(
        input_size=args.image_size,
        width=args.width,
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads,
        augment=args.augment,
    )
    with tqdm(total=args.epochs, desc="training field U-Net", unit="epoch") as bar:

        def on_epoch(point: dict) -> None:
            bar.set_postfix(train=point["train_loss"], validation=point["validation_loss"])
            bar.update(1)

        result = train_field_unet(train, validation, params, on_epoch)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(result.onnx_bytes)
    record = {
        "parameters": asdict(params),
        "train_fields": len(train),
        "validation_fields": len(validation),
        "best_epoch": result.best_epoch,
        "best_validation_loss": round(result.best_validation_loss, 4),
        "seconds": round(result.seconds, 1),
        "curve": result.curve,
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(
        f"{args.out}: best epoch {result.best_epoch} of {args.epochs}, validation loss "
        f"{result.best_validation_loss:.4f}, {result.seconds / 60:.1f} min "
        f"({len(train)} training / {len(validation)} validation fields)"
    )
    return 0
