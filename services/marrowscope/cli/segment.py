"""``marrowscope segment INPUT... --out DIR [--overlay]``: field images to cell crops, locally.

Runs the default segmentation algorithm (or, with ``--model``, an exported field U-Net) in this
process (no stack needed) so a person can check what the service would produce: one 282x282
crop per nucleated cell, ``cells.json`` and ``cells.csv`` with boxes, areas and flags, and with
``--overlay`` the field with boxes and contours drawn.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from tqdm import tqdm

from marrowscope.core.datasets import IMAGE_SUFFIXES
from marrowscope.core.errors import MarrowscopeError
from marrowscope.core.images import decode_image, encode_png
from marrowscope.segmentation.algorithm import (
    CellRegion,
    SegmentationAlgorithm,
    crop_cell,
    mask_to_rle,
)
from marrowscope.segmentation.catalogue import load_unet
from marrowscope.segmentation.stain import StainSegmenter


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; folders searched recursively for images."""
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise MarrowscopeError(f"{item} does not exist")
    return files


def draw_overlay(rgb: np.ndarray, cells: list[CellRegion]) -> Image.Image:
    """The field with each cell's contour (yellow), box (green; orange when flagged) and index."""
    image = rgb.copy()
    for cell in cells:
        x, y, w, h = cell.box
        edge = cell.mask & ~ndimage.binary_erosion(cell.mask)
        image[y : y + h, x : x + w][edge] = (255, 230, 0)
    overlay = Image.fromarray(image)
    draw = ImageDraw.Draw(overlay)
    for index, cell in enumerate(cells):
        x, y, w, h = cell.box
        colour = (255, 140, 0) if cell.flags else (0, 200, 0)
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour, width=2)
        draw.text((x + 3, y + 2), str(index), fill=colour)
    return overlay


def segment_files(inputs: list[Path], out: Path, overlay: bool, model: Path | None = None) -> dict:
    """Segment every input image; returns a summary (also written as ``cells.json``)."""
    segmenter: SegmentationAlgorithm = load_unet(model) if model else StainSegmenter()
    files = expand_inputs(inputs)
    if not files:
        raise MarrowscopeError("no images found in the inputs (jpg, png, tif, bmp)")
    (out / "crops").mkdir(parents=True, exist_ok=True)
    if overlay:
        (out / "overlays").mkdir(exist_ok=True)
    rows: list[dict] = []
    errors: dict[str, str] = {}
    for number, path in enumerate(tqdm(files, desc="segmenting", unit="field")):
        try:
            image = decode_image(path.read_bytes())
        except MarrowscopeError as error:
            errors[str(path)] = str(error)
            continue
        result = segmenter.segment(image.rgb)
        stem = f"{number:05d}-{path.stem}"
        for index, cell in enumerate(result.cells):
            crop = out / "crops" / f"{stem}-{index:03d}.png"
            crop.write_bytes(encode_png(crop_cell(image.rgb, cell)))
            x, y, w, h = cell.box
            rows.append(
                {
                    "image": str(path),
                    "cell": index,
                    "crop": str(crop.relative_to(out)),
                    "x": x,
                    "y": y,
                    "width": w,
                    "height": h,
                    "area": cell.area,
                    "flags": ";".join(cell.flags),
                    "mask_rle": mask_to_rle(cell.mask),
                }
            )
        if overlay:
            draw_overlay(image.rgb, result.cells).save(out / "overlays" / f"{stem}.png")
    summary = {
        "algorithm": segmenter.version,
        "images": len(files),
        "cells": rows,
        "errors": errors,
    }
    (out / "cells.json").write_text(json.dumps(summary, indent=2))
    with (out / "cells.csv").open("w", newline="") as handle:
        fields = ["image", "cell", "crop", "x", "y", "width", "height", "area", "flags"]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return summary
