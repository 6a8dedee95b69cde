"""``marrowscope segment INPUT... --out DIR [--overlay]``: field images to cell crops, locally.

Runs the service's default segmentation (the shipped field U-Net at the canonical scale; with
``--model``, a U-Net from ``marrowscope train-segmenter`` the same way) in this process (no stack needed) so a person can check what the service would produce: one
282x282 crop per nucleated cell, ``cells.json`` and ``cells.csv`` with boxes, areas and flags,
``fields.csv`` with each field's scale and quality verdict, and with ``--overlay`` the field
with boxes and contours drawn (and, on a field that is not analysable, a red frame and why).
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
    FieldReport,
    Segmentation,
    SegmentationAlgorithm,
    crop_cell,
    mask_to_rle,
)
from marrowscope.segmentation.canonical import ScaleAwareSegmenter
from marrowscope.segmentation.catalogue import canonical_unet, default_algorithms, read_model
from marrowscope.segmentation.field_scale import FieldScale


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


def draw_overlay(
    rgb: np.ndarray, cells: list[CellRegion], report: FieldReport | None = None
) -> Image.Image:
    """The field with each cell's contour (yellow), box (green; orange when flagged) and index;
    a field that is not analysable gets a red frame and its flags written on it."""
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
    if report is not None and not report.analysable:
        width, height = overlay.size
        draw.rectangle((0, 0, width - 1, height - 1), outline=(230, 0, 0), width=6)
        draw.text((10, 10), "NOT ANALYSABLE: " + ", ".join(report.flags), fill=(230, 0, 0))
    return overlay


def field_row(path: Path, result: Segmentation) -> dict:
    """One field's scale and verdict (``fields.csv`` and ``cells.json``)."""
    report = result.report
    return {
        "image": str(path),
        "cells": len(result.cells),
        "analysable": report.analysable if report else True,
        "flags": ";".join(report.flags) if report else "",
        "reason": "; ".join(report.reasons) if report else "",
        "um_per_px": report.um_per_px if report else None,
        "red_cell_diameter_px": report.red_cell_diameter_px if report else None,
        "scale_source": report.scale_source if report else "",
        "scale_confidence": report.scale_confidence if report else None,
        "vignetting": report.vignetting if report else None,
    }


def segment_files(
    inputs: list[Path],
    out: Path,
    overlay: bool,
    model: Path | None = None,
    um_per_px: float | None = None,
) -> dict:
    """Segment every input image; returns a summary (also written as ``cells.json``).
    ``um_per_px``: the images' pixel size when known (else measured per field)."""
    if model is not None:
        segmenter: SegmentationAlgorithm = canonical_unet(read_model(model))
    else:
        segmenter = next(iter(default_algorithms().values()))
    given = FieldScale.given(um_per_px, "upload") if um_per_px else None
    files = expand_inputs(inputs)
    if not files:
        raise MarrowscopeError("no images found in the inputs (jpg, png, tif, bmp)")
    (out / "crops").mkdir(parents=True, exist_ok=True)
    if overlay:
        (out / "overlays").mkdir(exist_ok=True)
    rows: list[dict] = []
    field_rows: list[dict] = []
    errors: dict[str, str] = {}
    for number, path in enumerate(tqdm(files, desc="segmenting", unit="field")):
        try:
            image = decode_image(path.read_bytes())
        except MarrowscopeError as error:
            errors[str(path)] = str(error)
            continue
        if isinstance(segmenter, ScaleAwareSegmenter):
            result = segmenter.segment(image.rgb, given)
        else:
            result = segmenter.segment(image.rgb)
        field_rows.append(field_row(path, result))
        analysable = field_rows[-1]["analysable"]
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
                    "field_analysable": analysable,
                    "mask_rle": mask_to_rle(cell.mask),
                }
            )
        if overlay:
            draw_overlay(image.rgb, result.cells, result.report).save(
                out / "overlays" / f"{stem}.png"
            )
    summary = {
        "algorithm": segmenter.version,
        "images": len(files),
        "fields_not_analysable": sum(not f["analysable"] for f in field_rows),
        "fields": field_rows,
        "cells": rows,
        "errors": errors,
    }
    (out / "cells.json").write_text(json.dumps(summary, indent=2))
    with (out / "cells.csv").open("w", newline="") as handle:
        columns = ["image", "cell", "crop", "x", "y", "width", "height", "area", "flags"]
        writer = csv.DictWriter(
            handle, fieldnames=[*columns, "field_analysable"], extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(rows)
    with (out / "fields.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELD_COLUMNS)
        writer.writeheader()
        writer.writerows(field_rows)
    return summary


FIELD_COLUMNS = [
    "image",
    "cells",
    "analysable",
    "flags",
    "reason",
    "um_per_px",
    "red_cell_diameter_px",
    "scale_source",
    "scale_confidence",
    "vignetting",
]
