"""A simulated "other lab": TXL-PBC fields as another microscope and camera would show them.

What a new lab's fields differ in (issue 19): lower magnification (cells 2-3x smaller in
pixels), strong vignetting, a tinted background, a different stain hue and saturation, a
softer lens and stronger JPEG compression. :func:`other_lab_field` applies all of these to an
annotated field with a seeded generator, so the benchmark and the tests measure the segmenters
on them without committing any image; :func:`other_lab_mosaic` tiles such fields into one
large camera frame (1440x900 by default), as a wide-field camera gives.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from .detection_eval import Box
from .illumination import BACKGROUND_LEVEL, fit_illumination, flat_field

SCALE_FACTORS = (2.0, 2.5, 3.0)  # the field is downscaled by these


@dataclass(frozen=True)
class LabField:
    """An image and its white-cell boxes in that image's pixels."""

    rgb: np.ndarray
    wbc: list[Box]
    red_cell_boxes: list[Box]


def vignette(rgb: np.ndarray, strength: float) -> np.ndarray:
    """Corners darker by ``strength`` (0-1) of the centre's brightness, falling off as r^2."""
    height, width = rgb.shape[:2]
    v = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    u = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    falloff = 1.0 - strength * (u * u + v * v) / 2.0
    return np.clip(rgb.astype(np.float32) * falloff[..., None], 0, 255).astype(np.uint8)


def tint_and_stain(
    rgb: np.ndarray, tint: Sequence[float], hue_shift: float, saturation: float
) -> np.ndarray:
    """A background tint (per-channel gains), a hue rotation (fraction of a turn) and a
    saturation factor, as another stain batch and camera white balance give."""
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV")).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_shift * 255.0) % 256.0
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    shifted = np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"))
    return np.clip(shifted.astype(np.float32) * np.asarray(tint, np.float32), 0, 255).astype(
        np.uint8
    )


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def another_camera(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """What the other lab's optics and camera do to an image: a softer lens, a pinkish
    background, another stain batch's hue and saturation, vignetting, stronger JPEG."""
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 0.9))))
    out = tint_and_stain(
        np.asarray(image),
        tint=(1.0, float(rng.uniform(0.82, 0.9)), float(rng.uniform(0.85, 0.95))),
        hue_shift=float(rng.uniform(-0.04, 0.04)),
        saturation=float(rng.uniform(0.7, 1.3)),
    )
    return jpeg(vignette(out, float(rng.uniform(0.35, 0.55))), int(rng.integers(55, 80)))


def other_lab_field(
    rgb: np.ndarray,
    wbc: Sequence[Box],
    red_cells: Sequence[Box],
    downscale: float,
    seed: int,
) -> LabField:
    """``rgb`` as the other lab's camera would give it (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    height, width = rgb.shape[:2]
    factor = 1.0 / downscale
    image = Image.fromarray(rgb).resize(
        (max(8, round(width * factor)), max(8, round(height * factor))), Image.Resampling.BILINEAR
    )
    out = another_camera(image, rng)
    sx, sy = out.shape[1] / width, out.shape[0] / height
    return LabField(
        out,
        [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in wbc],
        [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in red_cells],
    )


def other_lab_mosaic(
    fields: Sequence[tuple[np.ndarray, Sequence[Box], Sequence[Box]]],
    red_cell_px: float,
    seed: int,
    size: tuple[int, int] = (1440, 900),
) -> LabField:
    """One wide camera frame (``size`` = width, height) at one magnification: each field is
    resampled so its annotated red cells are ``red_cell_px`` across (TXL-PBC's sources differ
    in magnification; a camera does not), tiled row by row, then blurred, tinted, vignetted
    and compressed as one frame. Fields without red-cell boxes or that do not fit are left
    out."""
    width, height = size
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:] = round(BACKGROUND_LEVEL)
    wbc: list[Box] = []
    red: list[Box] = []
    x = y = row_height = 0
    for rgb, field_wbc, field_red in fields:
        if not field_red:
            continue
        typical = float(np.median([(w + h) / 2 for _, _, w, h in field_red]))
        factor = red_cell_px / typical
        h, w = max(8, round(rgb.shape[0] * factor)), max(8, round(rgb.shape[1] * factor))
        if x + w > width:
            x, y, row_height = 0, y + row_height, 0
        if y + h > height or w > width:
            break
        small = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
        # One frame has one background: each source's own is made even and grey first.
        canvas[y : y + h, x : x + w] = flat_field(small, fit_illumination(small))
        sx, sy = w / rgb.shape[1], h / rgb.shape[0]
        for group, boxes in ((wbc, field_wbc), (red, field_red)):
            group.extend((x + bx * sx, y + by * sy, bw * sx, bh * sy) for bx, by, bw, bh in boxes)
        x, row_height = x + w, max(row_height, h)
    return LabField(another_camera(Image.fromarray(canvas), np.random.default_rng(seed)), wbc, red)
