"""Image intake: decide by magic bytes what a file is, decode it within limits, return RGB.

Everything that enters Marrowscope as an image passes through ``decode_image``: uploads from the
LIS, field images for segmentation, crops for inference. The errors name the problem and what
the sender can do about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageTooLarge, InvalidImage

# Magic bytes of the formats we accept. The file name never decides.
_MAGIC: list[tuple[bytes, str]] = [
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
]
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "BMP": "image/bmp"}


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000  # a 6000x6000 scan; decompression bombs are far above
    min_side: int = 8


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # HxWx3 uint8
    format: str
    original_mode: str
    # The stored image's size (width, height); larger than ``rgb`` when decoded reduced.
    source_size: tuple[int, int] = (0, 0)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def sniff_format(data: bytes) -> str:
    """The image format named by the first bytes, or InvalidImage."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    head = data[:8].hex(" ") if data else "empty"
    raise InvalidImage(
        f"not an image: the content (first bytes {head}) is not JPEG, PNG, TIFF or BMP; "
        "send the image file itself"
    )


def _rgb_image(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """``image`` as an 8-bit RGB image (``image`` itself when it already is one)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # High bit depth grey: scale the used range to 8 bits instead of clipping at 255.
        values = np.asarray(image, dtype=np.float64)
        high = float(values.max()) if values.size else 0.0
        scale = 255.0 / (65535.0 if mode.startswith("I;16") or high > 255 else max(high, 1.0))
        grey = np.clip(values * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


@dataclass(frozen=True)
class DecodedPilImage:
    """What :func:`decode_pil_image` returns: the RGB image still as a Pillow image, so that
    the model's preprocessing resizes it without a round trip through NumPy."""

    image: Image.Image  # mode RGB
    format: str
    original_mode: str
    source_size: tuple[int, int]


def decode_image(
    data: bytes,
    limits: ImageLimits | None = None,
    *,
    background: tuple[int, int, int] = (255, 255, 255),
    reduce_to: int = 0,
) -> DecodedImage:
    """Decode ``data`` into an 8-bit RGB array (see :func:`decode_pil_image`)."""
    decoded = decode_pil_image(data, limits, background=background, reduce_to=reduce_to)
    return DecodedImage(
        rgb=np.asarray(decoded.image),
        format=decoded.format,
        original_mode=decoded.original_mode,
        source_size=decoded.source_size,
    )


def _format_within_limits(data: bytes, limits: ImageLimits) -> str:
    """The format, once the byte count is within the limit."""
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"image of {len(data)} bytes exceeds the limit of {limits.max_bytes} bytes"
        )
    return sniff_format(data)


def _size_within_limits(image: Image.Image, limits: ImageLimits) -> tuple[int, int]:
    """(width, height) from the header, once within the pixel and side limits."""
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image of {width}x{height} pixels exceeds the limit of {limits.max_pixels} "
            "pixels; send a smaller field or tile it"
        )
    if min(width, height) < limits.min_side:
        raise InvalidImage(f"image of {width}x{height} pixels is too small to analyse")
    return width, height


def decode_pil_image(
    data: bytes,
    limits: ImageLimits | None = None,
    *,
    background: tuple[int, int, int] = (255, 255, 255),
    reduce_to: int = 0,
) -> DecodedPilImage:
    """Decode ``data`` into an 8-bit RGB Pillow image.

    ``reduce_to`` lets a JPEG decode at 1/2, 1/4 or 1/8 scale (in the DCT, much faster) as long
    as its longer side stays at least ``reduce_to`` pixels; other formats decode in full.

    Transparent pixels are composited on ``background`` (white, like a slide's bright field);
    16-bit and float grey images are scaled to 8 bits; palette, CMYK and grey become RGB.
    """
    limits = limits or ImageLimits()
    fmt = _format_within_limits(data, limits)
    try:
        # Our own pixel limit is checked before any pixel is decoded. (Pillow's bomb warning,
        # above 89 M pixels, is not turned into an error here: warnings.catch_warnings is not
        # thread-safe, and the inference service decodes on several threads.)
        image = Image.open(io.BytesIO(data), formats=[fmt])
        width, height = _size_within_limits(image, limits)
        if reduce_to and fmt == "JPEG" and max(width, height) > 2 * reduce_to:
            ratio = reduce_to / max(width, height)
            image.draft(image.mode, (math.ceil(width * ratio), math.ceil(height * ratio)))
        image.load()
    except (ImageTooLarge, InvalidImage):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image rejected as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise InvalidImage(f"file starts like {fmt} but cannot be decoded; it is damaged") from None
    except (OSError, SyntaxError, ValueError) as exc:
        message = str(exc)
        if "truncated" in message or "premature" in message.lower():
            raise InvalidImage(
                f"{fmt} image is truncated (the upload is incomplete); send the whole file"
            ) from None
        raise InvalidImage(f"{fmt} image cannot be decoded: {message}") from None
    return DecodedPilImage(_rgb_image(image, background), fmt, image.mode, (width, height))


def encode_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG of an RGB array (crops are stored as PNG so pixels never drift)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


@dataclass(frozen=True)
class ImageInfo:
    """What a check of an upload keeps: the format and size, not the pixels."""

    format: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def image_pixels(data: bytes, limits: ImageLimits | None = None) -> int:
    """The pixel count the image's header declares (nothing decoded), or the error that
    decoding would raise for its size or format."""
    limits = limits or ImageLimits()
    fmt = _format_within_limits(data, limits)
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidImage(f"file starts like {fmt} but cannot be decoded; it is damaged") from None
    width, height = _size_within_limits(image, limits)
    return width * height


def inspect_image(data: bytes, limits: ImageLimits | None = None) -> ImageInfo:
    """Decode ``data`` in full (so a damaged or truncated file is refused now, not at
    analysis) and keep only its format and size: the pixels are freed on return."""
    decoded = decode_pil_image(data, limits)
    width, height = decoded.image.size
    return ImageInfo(decoded.format, width, height)


class PixelBudget:
    """Bounds the pixels being decoded at once in a process, so memory stays bounded however
    many uploads arrive together: ordinary fields decode side by side, while a field near the
    pixel limit (a decompression bomb: a small PNG of 40 M pixels) waits for room."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels
        self._in_use = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room = asyncio.Condition()

    def _condition(self) -> asyncio.Condition:
        # An asyncio.Condition belongs to one event loop: a server has one, but a test
        # client may run each request on its own. Nothing is shared between loops.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._room, self._in_use = loop, asyncio.Condition(), 0
        return self._room

    @contextlib.asynccontextmanager
    async def reserve(self, pixels: int) -> AsyncIterator[None]:
        needed = min(pixels, self.pixels)  # one image larger than the budget runs alone
        room = self._condition()
        async with room:
            await room.wait_for(lambda: self._in_use + needed <= self.pixels)
            self._in_use += needed
        try:
            yield
        finally:
            async with room:
                self._in_use -= needed
                room.notify_all()

    async def inspect(self, data: bytes, limits: ImageLimits) -> ImageInfo:
        """:func:`inspect_image` within the budget, on a worker thread."""
        pixels = await asyncio.to_thread(image_pixels, data, limits)
        async with self.reserve(pixels):
            return await asyncio.to_thread(inspect_image, data, limits)
