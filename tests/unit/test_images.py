import io

import numpy as np
import pytest
from PIL import Image

from marrowscope.core.errors import ImageTooLarge, InvalidImage
from marrowscope.core.images import ImageLimits, decode_image, sniff_format


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture()
def jpeg() -> bytes:
    rng = np.random.default_rng(0)
    return encode(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8), "JPEG")


def test_decodes_jpeg_to_rgb(jpeg: bytes) -> None:
    image = decode_image(jpeg)
    assert (
        image.format == "JPEG" and image.rgb.shape == (120, 90, 3) and image.rgb.dtype == np.uint8
    )


def test_format_comes_from_magic_bytes_not_the_name(jpeg: bytes) -> None:
    png = encode(np.zeros((20, 20, 3), np.uint8), "PNG")
    assert sniff_format(png) == "PNG" and sniff_format(jpeg) == "JPEG"


def test_ds_store_renamed_to_jpg_is_rejected() -> None:
    ds_store = b"\x00\x00\x00\x01Bud1" + bytes(2048)
    with pytest.raises(InvalidImage, match="not an image"):
        decode_image(ds_store)


def test_truncated_jpeg_is_rejected_with_a_clear_message(jpeg: bytes) -> None:
    with pytest.raises(InvalidImage, match="truncated"):
        decode_image(jpeg[: len(jpeg) // 2])


def test_pixel_limit_rejects_before_decoding() -> None:
    big = encode(np.zeros((300, 300), np.uint8), "PNG")
    with pytest.raises(ImageTooLarge, match="exceeds the limit"):
        decode_image(big, ImageLimits(max_pixels=50_000))


def test_decompression_bomb_is_refused() -> None:
    bomb = encode(np.zeros((12_000, 12_000), np.uint8), "PNG", optimize=True)
    assert len(bomb) < 1_000_000
    # Pillow warns (its threshold is 89 M pixels); our own 40 M limit refuses it before decoding.
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLarge, match="limit"):
        decode_image(bomb)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    image = decode_image(encode(ramp, "PNG"))
    assert image.original_mode.startswith("I")
    assert image.rgb.max() > 200 and image.rgb.min() == 0  # the range survives
    assert np.all(image.rgb[..., 0] == image.rgb[..., 1])


def test_grayscale_becomes_rgb() -> None:
    image = decode_image(encode(np.full((30, 30), 77, np.uint8), "PNG"))
    assert image.rgb.shape == (30, 30, 3) and int(image.rgb[0, 0, 2]) == 77


def test_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 15:, 3] = 255
    image = decode_image(encode(rgba, "PNG"))
    assert tuple(image.rgb[0, 0]) == (255, 255, 255)
    assert tuple(image.rgb[0, 20]) == (255, 0, 0)


def test_byte_limit(jpeg: bytes) -> None:
    with pytest.raises(ImageTooLarge):
        decode_image(jpeg, ImageLimits(max_bytes=100))


def test_pixel_budget_lets_small_images_share_it_and_makes_large_ones_wait() -> None:
    import asyncio

    from marrowscope.core.images import PixelBudget

    budget = PixelBudget(100)
    running, peak = 0, 0

    async def decode(pixels: int) -> None:
        nonlocal running, peak
        async with budget.reserve(pixels):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1

    async def scenario(sizes: list[int]) -> int:
        nonlocal peak
        peak = 0
        await asyncio.gather(*(decode(p) for p in sizes))
        return peak

    assert asyncio.run(scenario([10] * 8)) == 8  # 80 of 100: all at once
    assert asyncio.run(scenario([60] * 4)) == 1  # two would be 120: one at a time
    assert asyncio.run(scenario([500, 500])) == 1  # larger than the budget: alone, not stuck


def test_an_upload_check_keeps_the_size_not_the_pixels() -> None:
    from marrowscope.core.images import image_pixels, inspect_image

    data = encode(np.random.default_rng(1).integers(0, 255, (40, 30, 3), dtype=np.uint8), "PNG")
    assert image_pixels(data) == 1200
    info = inspect_image(data)
    assert (info.format, info.width, info.height, info.content_type) == ("PNG", 30, 40, "image/png")
    with pytest.raises(ImageTooLarge):
        image_pixels(data, ImageLimits(max_pixels=1000))
    with pytest.raises(InvalidImage, match="truncated|damaged|cannot be decoded"):
        inspect_image(data[: len(data) // 2])
