"""The one preprocessing path: geometry of the paper's crop, and the fast paths agree with it."""

import io

import numpy as np
import pytest
from PIL import Image

from marrowscope.core.images import decode_image
from marrowscope.core.preprocess import (
    InputSpecData,
    decode_for_model,
    normalise,
    placement,
    preprocess,
    to_canvas,
)
from marrowscope.core.synthetic import make_cell


def _reference(rgb: np.ndarray, spec: InputSpecData) -> np.ndarray:
    """The paper's two steps, literally: crop on a 282 black square, then resize and normalise."""
    square = Image.fromarray(to_canvas(rgb)).resize(
        (spec.size, spec.size), Image.Resampling.BILINEAR
    )
    scaled = np.asarray(square, np.float32) / 255.0
    return ((scaled - np.float32(0.5)) / np.float32(0.25)).transpose(2, 0, 1)


def test_placement_scales_down_only_large_images() -> None:
    assert placement(282, 282, 96) == (96, 96)
    assert placement(141, 100, 282) == (141, 100)  # smaller than the canvas: not enlarged
    assert placement(564, 282, 96) == (96, 48)
    assert placement(360, 363, 96) == (95, 96)


def test_direct_resize_matches_the_two_step_crop() -> None:
    spec = InputSpecData(size=96, dtype="float32")  # normalised, to compare with the reference
    for rgb in (make_cell("LY", 1).rgb, np.asarray(Image.new("RGB", (360, 363), (200, 90, 150)))):
        fast, slow = preprocess(rgb, spec), _reference(rgb, spec)
        assert fast.shape == slow.shape == (3, 96, 96) and fast.dtype == np.float32
        assert np.abs(fast - slow).mean() < 0.08  # interpolation only; same geometry


def test_reduced_jpeg_decode_keeps_the_geometry_of_the_stored_size() -> None:
    spec = InputSpecData(size=96, dtype="float32")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:363, 0:360]
    rgb = np.stack([(xx % 255), (yy % 255), ((xx + yy) // 3 % 255)], -1).astype(np.uint8)
    rgb[150:200, 150:200] = rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    fast = decode_for_model(buffer.getvalue(), spec)
    full = preprocess(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")), spec)
    black = np.float32(-2.0)
    assert (
        np.array_equal(fast == black, full == black)
        or np.mean((fast == black) != (full == black)) < 0.01
    )
    assert np.abs(fast - full).mean() < 0.1


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_serving_path_equals_the_array_path_for_every_kind_of_image() -> None:
    """decode_for_model stays in Pillow from decode to resize (no NumPy round trip); its output
    must be bit for bit what the array path gives, for every mode we accept and both dtypes."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (363, 360, 3), dtype=np.uint8)
    images = [
        _encoded(Image.fromarray(rgb), "JPEG"),  # decoded at half scale for 96 px
        _encoded(Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8)), "PNG"),
        _encoded(Image.fromarray(rng.integers(0, 60000, (120, 130), dtype=np.uint16)), "PNG"),
        _encoded(Image.fromarray(rgb[:100, :90]).convert("P"), "PNG"),
        _encoded(Image.fromarray(rgb[:40, :300]).convert("L"), "BMP"),
    ]
    stats = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    pixels_spec = InputSpecData(size=96, **stats)  # type: ignore[arg-type]
    float_spec = InputSpecData(size=96, dtype="float32", **stats)  # type: ignore[arg-type]
    for data in images:
        decoded = decode_image(data, reduce_to=96)
        for spec, dtype in ((pixels_spec, np.uint8), (float_spec, np.float32)):
            expected = preprocess(decoded.rgb, spec, decoded.source_size)
            got = decode_for_model(data, spec)
            assert got.dtype == dtype and got.shape == (3, 96, 96) and got.flags.c_contiguous
            assert np.array_equal(got, expected)
        # Float-input models get exactly these pixels, normalised.
        pixels = decode_for_model(data, pixels_spec)
        assert np.array_equal(
            normalise(pixels.transpose(1, 2, 0), float_spec), decode_for_model(data, float_spec)
        )


def test_normalise_is_the_per_channel_formula() -> None:
    spec = InputSpecData(4, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), dtype="float32")
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    got = normalise(levels, spec)
    for c in range(3):
        scaled = levels[:, :, c].astype(np.float32) / np.float32(255.0)
        assert np.array_equal(got[c], (scaled - np.float32(spec.mean[c])) / np.float32(spec.std[c]))


def test_input_specs_registered_before_dtype_existed_read_as_float_input() -> None:
    assert InputSpecData.from_json({"size": 96, "mean": [0.5] * 3, "std": [0.25] * 3}).dtype == (
        "float32"
    )
    spec = InputSpecData(size=64)
    assert spec.dtype == "uint8" and InputSpecData.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="dtype"):
        InputSpecData(size=64, dtype="float16")
