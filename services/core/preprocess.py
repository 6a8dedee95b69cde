"""The one preprocessing path used by training, ONNX export checks and inference.

A cell image becomes the paper's crop (centred on a 282x282 black square, scaled down only when
larger), is resized to the model's input size and normalised per channel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

CANVAS = 282  # the paper's crop size


@dataclass(frozen=True)
class InputSpecData:
    size: int = 96
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    layout: str = field(default="NCHW")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> InputSpecData:
        return cls(
            size=int(data["size"]),
            mean=tuple(data["mean"]),  # type: ignore[arg-type]
            std=tuple(data["std"]),  # type: ignore[arg-type]
            layout=data.get("layout", "NCHW"),
        )


def to_canvas(rgb: np.ndarray, canvas: int = CANVAS) -> np.ndarray:
    """Centre ``rgb`` on a black ``canvas`` square, scaling it down (never up) to fit."""
    height, width = rgb.shape[:2]
    if height == canvas and width == canvas:
        return rgb
    scale = min(1.0, canvas / max(height, width))
    if scale < 1.0:
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        rgb = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR))
        height, width = new_h, new_w
    out = np.zeros((canvas, canvas, 3), dtype=np.uint8)
    top, left = (canvas - height) // 2, (canvas - width) // 2
    out[top : top + height, left : left + width] = rgb
    return out


def preprocess(rgb: np.ndarray, spec: InputSpecData) -> np.ndarray:
    """HxWx3 uint8 -> 3xSxS float32, normalised as ``spec`` says."""
    square = to_canvas(rgb)
    resized = Image.fromarray(square).resize((spec.size, spec.size), Image.Resampling.BILINEAR)
    scaled = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(((scaled - mean) / std).transpose(2, 0, 1))


def preprocess_batch(images: list[np.ndarray], spec: InputSpecData) -> np.ndarray:
    if not images:
        return np.zeros((0, 3, spec.size, spec.size), np.float32)
    return np.stack([preprocess(img, spec) for img in images])
