"""Illumination and colour: flat-field correction, white balance and stain normalisation.

Another lab's microscope lights its fields unevenly (vignetting: darker corners), its camera
tints the background (pink, yellow, blue), and its stain is paler or darker. The segmenters
were tuned on evenly lit fields with a near-white background, so every field is brought there
first:

1. **Background surface.** The field is cut into a grid of blocks; in each block the bright end
   of each channel (a high percentile) is the local background, unless cells cover the whole
   block. A quadratic surface per channel is fitted to the block values, robustly: blocks far
   darker than the fit (covered by cells) are dropped and the surface refitted. Vignetting and
   the camera's tint are both in that surface.
2. **Flat field and white balance in one.** Each channel is divided by its surface and scaled so
   the background becomes :data:`BACKGROUND_LEVEL` grey.
3. **Stain normalisation.** In optical density (OD = -log10(I / background)) the stained
   pixels' typical density per channel is scaled towards a reference (TXL-PBC's fields), with
   the gain bounded so a blank or a nearly empty field is not blown up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUND_LEVEL = 235.0  # the grey level the background is brought to (TXL-PBC's median)
# Reference optical density per channel (R, G, B) of the stained layer's median pixel after
# white balance, measured on TXL-PBC val (``bench/segmentation.py --calibrate``).
REFERENCE_OD = (0.16, 0.38, 0.22)
MAX_STAIN_GAIN = 2.0


@dataclass(frozen=True)
class Illumination:
    """A fitted background: per channel, the coefficients of a quadratic surface in normalised
    coordinates (u, v in [-1, 1]), and how much of the field it could see."""

    coefficients: np.ndarray  # (3, 6): 1, u, v, u*u, v*v, u*v
    background_share: float  # of the grid blocks, the share that showed background
    vignetting: float  # 1 - darkest corner / centre brightness of the surface (0 = even)
    tint: tuple[float, float, float]  # the background colour at the centre, before correction

    def surface(
        self, height: int, width: int, window: tuple[int, int, int, int] | None = None
    ) -> np.ndarray:
        """The background (height, width, 3) float32 at these sides; with ``window`` (y0, y1,
        x0, x1) only that part of it."""
        v = np.linspace(-1.0, 1.0, height, dtype=np.float32)
        u = np.linspace(-1.0, 1.0, width, dtype=np.float32)
        if window is not None:
            v, u = v[window[0] : window[1]], u[window[2] : window[3]]
        out = np.empty((len(v), len(u), 3), np.float32)
        for channel in range(3):
            c = [float(k) for k in self.coefficients[channel]]  # 1, u, v, u*u, v*v, u*v
            along_u = c[0] + c[1] * u + c[3] * u * u
            along_v = c[2] * v + c[4] * v * v
            out[..., channel] = along_u[None, :] + along_v[:, None] + c[5] * np.outer(v, u)
        return np.maximum(out, 1.0)


def _design(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(u), u, v, u * u, v * v, u * v], axis=1)


def fit_illumination(rgb: np.ndarray, grid: int = 12, percentile: float = 90.0) -> Illumination:
    """The background surface of a field (see the module's docstring)."""
    height, width = rgb.shape[:2]
    step = max(1, min(height, width) // 200)  # a subsampled view is plenty for a smooth surface
    view = rgb[::step, ::step]
    rows, cols = max(2, min(grid, view.shape[0] // 8)), max(2, min(grid, view.shape[1] // 8))
    bh, bw = view.shape[0] // rows, view.shape[1] // cols
    blocks = (
        view[: rows * bh, : cols * bw]
        .reshape(rows, bh, cols, bw, 3)
        .transpose(0, 2, 1, 3, 4)
        .reshape(rows * cols, bh * bw, 3)
        .astype(np.float32)
    )
    # Per block, the mean colour of its brightest pixels: the background there.
    brightness = blocks.sum(axis=2)
    rank = min(brightness.shape[1] - 1, int(brightness.shape[1] * percentile / 100))
    cut = np.partition(brightness, rank, axis=1)[:, rank : rank + 1]
    bright = brightness >= cut
    values = (blocks * bright[..., None]).sum(axis=1) / np.maximum(bright.sum(axis=1), 1)[:, None]
    us = np.tile((np.arange(cols) + 0.5) / cols * 2 - 1, rows)
    vs = np.repeat((np.arange(rows) + 0.5) / rows * 2 - 1, cols)
    samples = np.asarray(values, np.float64)
    design = _design(np.asarray(us), np.asarray(vs))
    keep = np.ones(len(samples), bool)
    for _ in range(3):
        coefficients = np.linalg.lstsq(design[keep], samples[keep], rcond=None)[0]
        residual = (samples - design @ coefficients).sum(axis=1)
        spread = 1.4826 * np.median(np.abs(residual[keep] - np.median(residual[keep]))) + 3.0
        # Blocks covered by cells are darker than the background around them: drop them.
        new_keep = residual > -2.5 * spread
        if new_keep.sum() < 6 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    fitted = Illumination(
        coefficients=coefficients.T.astype(np.float32),
        background_share=float(keep.mean()),
        vignetting=0.0,
        tint=(0.0, 0.0, 0.0),
    )
    probe = fitted.surface(33, 33).sum(axis=2)
    centre = float(probe[16, 16])
    corners = min(
        float(probe[0, 0]), float(probe[0, -1]), float(probe[-1, 0]), float(probe[-1, -1])
    )
    tint = fitted.surface(3, 3)[1, 1]
    return Illumination(
        coefficients=fitted.coefficients,
        background_share=fitted.background_share,
        vignetting=round(max(0.0, 1.0 - corners / max(centre, 1.0)), 4),
        tint=(float(tint[0]), float(tint[1]), float(tint[2])),
    )


def flat_field(
    rgb: np.ndarray,
    illumination: Illumination,
    within: tuple[int, int, int, int, int, int] | None = None,
) -> np.ndarray:
    """The field with its background made even and grey (uint8). ``within`` (height, width,
    y0, y1, x0, x1): ``rgb`` is that window of a field of that size."""
    if within is None:
        gain = BACKGROUND_LEVEL / illumination.surface(rgb.shape[0], rgb.shape[1])
    else:
        gain = BACKGROUND_LEVEL / illumination.surface(within[0], within[1], within[2:])
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def stain_gains(rgb: np.ndarray) -> np.ndarray:
    """Per channel, the factor that brings the stained layer's median optical density to
    :data:`REFERENCE_OD` (bounded to [1 / MAX_STAIN_GAIN, MAX_STAIN_GAIN]). ``rgb`` is flat
    fielded. Ones when too little of the field is stained to measure."""
    od = optical_density(rgb[::2, ::2])
    stained = od.sum(axis=2) > 0.3  # clearly not background
    if stained.mean() < 0.02:
        return np.ones(3, np.float32)
    typical = np.median(od[stained], axis=0)
    gains = np.asarray(REFERENCE_OD, np.float32) / np.maximum(typical, 1e-3)
    return np.clip(gains, 1 / MAX_STAIN_GAIN, MAX_STAIN_GAIN).astype(np.float32)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """OD per channel relative to the corrected background (0 = background)."""
    return np.maximum(
        0.0, -np.log10((rgb.astype(np.float32) + 1.0) / (BACKGROUND_LEVEL + 1.0))
    ).astype(np.float32)


def normalise_stain(rgb: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """``rgb`` (flat fielded) with each channel's optical density multiplied by ``gains``."""
    if np.allclose(gains, 1.0):
        return rgb
    # OD scaling is a power law on intensity: I' = B * (I / B) ** gain, as a lookup table.
    levels = np.arange(256, dtype=np.float32)
    ratio = np.minimum((levels + 1.0) / (BACKGROUND_LEVEL + 1.0), 1.0)
    out = np.empty_like(rgb)
    for channel in range(3):
        table = (BACKGROUND_LEVEL + 1.0) * ratio ** float(gains[channel]) - 1.0
        table = np.where(levels > BACKGROUND_LEVEL, levels, table)
        out[..., channel] = np.clip(table, 0, 255).astype(np.uint8)[rgb[..., channel]]
    return out
