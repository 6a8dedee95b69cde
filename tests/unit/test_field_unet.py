"""The field U-Net's targets, augmentation, export and post-processing (no data or services)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from marrowscope.core.errors import FailedPrecondition
from marrowscope.core.objectstore import FilesystemObjectStore
from marrowscope.segmentation.catalogue import SHIPPED_UNET, algorithms_from_settings, load_unet
from marrowscope.segmentation.learned import UNetSegmenter
from marrowscope.segmentation.settings import SegmentationSettings
from marrowscope.training.field_unet import (
    CHANNELS,
    CORE_SCALE,
    AnnotatedField,
    FieldUNet,
    export_onnx,
    render_targets,
    training_sample,
)


def test_targets_are_the_inscribed_ellipse_and_a_core_of_half_its_axes() -> None:
    target = render_targets([[(10.0, 20.0, 40.0, 20.0)], [], []], 64)
    cell, core = target[CHANNELS.index("wbc_cell")], target[CHANNELS.index("wbc_core")]
    # pi/4 of the box for the ellipse, (CORE_SCALE)^2 of that for the core.
    assert cell.sum() == pytest.approx(np.pi / 4 * 40 * 20, rel=0.05)
    assert core.sum() == pytest.approx(cell.sum() * CORE_SCALE**2, rel=0.1)
    ys, xs = np.nonzero(cell)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 49, 20, 39)
    assert np.all(cell[core > 0] == 1)  # the core lies inside the cell
    assert target[CHANNELS.index("rbc_core")].sum() == 0


def test_augmentation_moves_image_and_targets_together() -> None:
    """A dark disc on a light field with its box: after crop, turn, flip and colour gains the
    core target still lies on the disc."""
    rgb = np.full((200, 300, 3), 230, np.uint8)
    yy, xx = np.mgrid[:200, :300]
    rgb[np.hypot(yy - 70, xx - 200) < 30] = (60, 20, 120)
    field = AnnotatedField("disc", rgb, [(170.0, 40.0, 60.0, 60.0)], [], [])
    rng = np.random.default_rng(3)
    for _ in range(12):
        image, target = training_sample(field, 64, rng)
        core = target[CHANNELS.index("wbc_core")] > 0
        assert image.shape == (64, 64, 3) and core.any()
        assert image[core].mean() < 150, "the core target left the cell"
        assert image[~(target[0] > 0)].mean() > 180


def test_other_lab_augmentation_keeps_targets_on_the_cell_at_every_scale() -> None:
    """With ``augment``: zoomed out onto a background canvas or zoomed in, blurred, tinted,
    vignetted, recompressed, the core target stays on the (darker) disc and shrinks and grows
    with it; the same generator state gives the same sample."""
    rgb = np.full((200, 300, 3), 230, np.uint8)
    yy, xx = np.mgrid[:200, :300]
    rgb[np.hypot(yy - 70, xx - 200) < 30] = (60, 20, 120)
    field = AnnotatedField("disc", rgb, [(170.0, 40.0, 60.0, 60.0)], [], [])
    rng = np.random.default_rng(5)
    core_sizes = []
    for _ in range(40):
        image, target = training_sample(field, 64, rng, augment=True)
        core = target[CHANNELS.index("wbc_core")] > 0
        assert image.shape == (64, 64, 3) and core.any()
        background = image[~(target[0] > 0)].mean()
        assert image[core].mean() < background - 40, "the core target left the cell"
        core_sizes.append(int(core.sum()))
    assert max(core_sizes) > 3 * min(core_sizes)  # scale augmentation: cells small and large
    again = [training_sample(field, 64, np.random.default_rng(9), augment=True) for _ in "ab"]
    assert np.array_equal(again[0][0], again[1][0]) and np.array_equal(again[0][1], again[1][1])


def _tiny_model() -> tuple[FieldUNet, bytes]:
    torch.manual_seed(0)
    model = FieldUNet(width=4, depth=2)
    return model, export_onnx(model, torch.rand(2, 3, 32, 32))


def test_export_checks_parity_and_records_what_the_service_needs() -> None:
    _, data = _tiny_model()
    meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert meta["marrowscope.channels"] == ",".join(CHANNELS)
    assert meta["marrowscope.input_size"] == "32"
    segmenter = UNetSegmenter(data)
    assert segmenter.version.startswith("unet-") and segmenter.input_size == 32
    # Preferring CUDA where ONNX Runtime has no CUDA provider (this CPU build) runs on CPU.
    on_gpu_if_any = UNetSegmenter(data, prefer_cuda=True)
    expected = (
        "CUDAExecutionProvider"
        if "CUDAExecutionProvider" in ort.get_available_providers()
        else "CPUExecutionProvider"
    )
    assert on_gpu_if_any.provider == expected and segmenter.provider == "CPUExecutionProvider"
    probs = segmenter.probabilities(np.zeros((50, 70, 3), np.uint8))
    assert probs.shape == (len(CHANNELS), 32, 32) and 0 <= probs.min() <= probs.max() <= 1


def test_instances_split_touching_cells_at_their_cores() -> None:
    """Post-processing alone, on hand-made probability maps: two overlapping bodies with two
    cores are two cells; a body without a core is a cell when large enough."""
    _, data = _tiny_model()
    segmenter = UNetSegmenter(data)
    probs = np.zeros((len(CHANNELS), 64, 64), np.float32)
    probs[:2] = render_targets([[(4.0, 4.0, 24.0, 24.0), (22.0, 4.0, 24.0, 24.0)], [], []], 64)[:2]
    probs[0] = np.maximum(probs[0], render_targets([[(30.0, 40.0, 20.0, 20.0)], [], []], 64)[0])
    owner, count = segmenter._instances(probs)
    assert count == 3
    assert owner[16, 10] != owner[16, 40] and owner[16, 10] and owner[16, 40]
    assert owner[50, 40] not in (0, owner[16, 10], owner[16, 40])


def test_touching_cells_are_flagged_and_each_keeps_its_own_pixels() -> None:
    """Through the whole post-processing, with the model's maps replaced by hand-made ones."""
    _, data = _tiny_model()
    segmenter = UNetSegmenter(data)
    maps = np.zeros((len(CHANNELS), 32, 32), np.float32)
    maps[:2] = render_targets(
        [[(2.0, 2.0, 12.0, 12.0), (11.0, 2.0, 12.0, 12.0), (8.0, 18.0, 10.0, 10.0)], [], []], 32
    )[:2]
    segmenter.probabilities = lambda rgb: maps  # type: ignore[method-assign]
    cells = segmenter.segment(np.full((64, 64, 3), 200, np.uint8)).cells
    assert len(cells) == 3
    flagged = sorted("overlaps_cell" in c.flags for c in cells)
    assert flagged == [False, True, True]
    assert all(c.mask.shape == (c.box[3], c.box[2]) for c in cells)


def test_bad_models_are_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="not a loadable ONNX"):
        UNetSegmenter(b"not a model")
    buffer = io.BytesIO()
    torch.onnx.export(torch.nn.Conv2d(3, 4, 1), (torch.rand(1, 3, 8, 8),), buffer, dynamo=False)
    with pytest.raises(FailedPrecondition, match="train-segmenter"):
        UNetSegmenter(buffer.getvalue())
    with pytest.raises(FailedPrecondition, match="cannot read the segmentation model"):
        load_unet(tmp_path / "missing.onnx")


def test_the_service_offers_the_shipped_unet_first_and_a_labs_own_instead(
    tmp_path: Path,
) -> None:
    shipped = hashlib.sha256(SHIPPED_UNET.read_bytes()).hexdigest()[:12]
    default = algorithms_from_settings(SegmentationSettings())
    assert list(default) == [f"unet-{shipped}-c2", "stain-v4", "stain-v3"]
    v3_first = algorithms_from_settings(SegmentationSettings(default_algorithm="stain-v3"))
    assert list(v3_first) == ["stain-v3", "stain-v4", f"unet-{shipped}-c2"]
    model = tmp_path / "unet.onnx"
    model.write_bytes(_tiny_model()[1])
    own = hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    both = algorithms_from_settings(SegmentationSettings(unet_model=str(model)))
    assert list(both) == [f"unet-{own}-c2", "stain-v4", "stain-v3"]
    stain_first = algorithms_from_settings(
        SegmentationSettings(unet_model=str(model), default_algorithm="stain-v4")
    )
    assert list(stain_first)[0] == "stain-v4"
    with pytest.raises(FailedPrecondition, match="cannot read the segmentation model"):
        algorithms_from_settings(SegmentationSettings(unet_model=str(tmp_path / "none.onnx")))
    # From the object store, by key; a missing key says what to do.
    store = FilesystemObjectStore(tmp_path / "store")
    store.put_bytes("models/segmentation/unet.onnx", model.read_bytes(), "application/octet-stream")
    from_store = algorithms_from_settings(
        SegmentationSettings(unet_model_key="models/segmentation/unet.onnx"), store
    )
    assert list(from_store) == list(both)
    with pytest.raises(FailedPrecondition, match="no object store"):
        algorithms_from_settings(SegmentationSettings(unet_model_key="models/none.onnx"))
    with pytest.raises(FailedPrecondition, match="not in the object store"):
        algorithms_from_settings(SegmentationSettings(unet_model_key="models/none.onnx"), store)
