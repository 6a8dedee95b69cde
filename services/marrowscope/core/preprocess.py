"""The one preprocessing path used by training, ONNX export checks and inference.

A cell image becomes the paper's crop (centred on a 282x282 black square, scaled down only when
larger) and is resized to the model's input size. Models take these pixels as uint8 and
normalise them per channel inside their graph (``training.model.PixelInput``), so training and
serving share one normalisation and the served batches are a quarter of the float size. Models
registered before that (input spec dtype ``float32``) are still served: for them the pixels are
normalised here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

from .errors import InvalidArgument
from .images import ImageLimits, decode_pil_image

CANVAS = 282  # the paper's crop size


@dataclass(frozen=True)
class InputSpecData:
    size: int = 96
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    layout: str = field(default="NCHW")
    # "uint8": the model takes pixels and normalises them itself (every model trained now);
    # "float32": the model takes pixels normalised with ``mean`` / ``std`` (earlier models).
    dtype: str = "uint8"

    def __post_init__(self) -> None:
        if self.dtype not in INPUT_DTYPES:
            raise ValueError(f"input dtype {self.dtype!r} is not one of {sorted(INPUT_DTYPES)}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> InputSpecData:
        return cls(
            size=int(data["size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            layout=data.get("layout", "NCHW"),
            dtype=data.get("dtype", "float32"),  # specs registered before dtype existed
        )


# The input dtype of a spec, and the type ONNX Runtime reports for a model's input.
INPUT_DTYPES = {"uint8": "tensor(uint8)", "float32": "tensor(float)"}


def input_dtype_of(onnx_input_type: str) -> str:
    """The spec dtype of a model whose input ONNX Runtime reports as ``onnx_input_type``."""
    for dtype, onnx_type in INPUT_DTYPES.items():
        if onnx_type == onnx_input_type:
            return dtype
    raise InvalidArgument(
        f"the model's input is {onnx_input_type}; Marrowscope models take uint8 pixels "
        "(or, trained before that, normalised float32)"
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


def placement(width: int, height: int, size: int, canvas: int = CANVAS) -> tuple[int, int]:
    """Size of a ``width`` x ``height`` image on the model's ``size`` square: the image is
    centred on a ``canvas`` square (scaled down only when larger), then the square is resized."""
    scale = min(1.0, canvas / max(width, height)) * size / canvas
    return max(1, round(width * scale)), max(1, round(height * scale))


def preprocess(
    rgb: np.ndarray, spec: InputSpecData, source_size: tuple[int, int] | None = None
) -> np.ndarray:
    """HxWx3 uint8 -> the model's input for one image (see :func:`preprocess_image`)."""
    return preprocess_image(Image.fromarray(rgb), spec, source_size)


def preprocess_image(
    image: Image.Image, spec: InputSpecData, source_size: tuple[int, int] | None = None
) -> np.ndarray:
    """RGB Pillow image -> 3xSxS model input: uint8 pixels, or float32 normalised as ``spec``
    says for models that take normalised input.

    One resize straight to the model's size (the same geometry as :func:`to_canvas` followed by
    a resize of the canvas, at a fraction of the cost). ``source_size`` is the stored image's
    (width, height) when ``image`` was decoded reduced; the placement follows the stored size.
    """
    source_w, source_h = source_size or image.size
    target = placement(source_w, source_h, spec.size)
    if target != image.size:
        image = image.resize(target, Image.Resampling.BILINEAR)
    square = Image.new("RGB", (spec.size, spec.size))  # black
    square.paste(image, ((spec.size - target[0]) // 2, (spec.size - target[1]) // 2))
    pixels = np.asarray(square)
    if spec.dtype == "float32":
        return normalise(pixels, spec)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def normalise(square: np.ndarray, spec: InputSpecData) -> np.ndarray:
    """SxSx3 uint8 -> 3xSxS float32 via one lookup table per channel (the input of models
    registered with dtype float32)."""
    table = _lookup(spec.mean, spec.std)
    out = np.empty((3, *square.shape[:2]), dtype=np.float32)  # already channel-first
    for channel in range(3):
        np.take(table[channel], square[:, :, channel], out=out[channel])
    return out


@lru_cache(maxsize=8)
def _lookup(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    return np.stack(
        [(levels - np.float32(m)) / np.float32(s) for m, s in zip(mean, std, strict=True)]
    )


def decode_for_model(
    data: bytes, spec: InputSpecData, limits: ImageLimits | None = None
) -> np.ndarray:
    """Stored image bytes -> model input: the one path for training jobs and inference."""
    decoded = decode_pil_image(data, limits, reduce_to=spec.size)
    return preprocess_image(decoded.image, spec, decoded.source_size)
