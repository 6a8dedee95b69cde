"""A U-Net that finds cells in smear fields, trained from box annotations (YOLO format).

The paper segments fields with a U-Net trained on masks. Public field datasets such as TXL-PBC
annotate boxes, not masks, so the targets are what a box justifies for a round cell: the
ellipse inscribed in each white-cell box (``cell``) and a core ellipse of half its axes
(``core``), which stays apart where touching cells' ellipses overlap and so marks one instance
per cell. Red cells and platelets get core targets too, for counting. The segmentation service
runs the exported ONNX model (:mod:`marrowscope.segmentation.learned`); this module is the
PyTorch side: model, targets, augmentation, training and export with a parity check.

Augmentation (issue 19: a model that generalises to other labs' microscopes and cameras): always
crops, flips, quarter turns and colour gains; with :attr:`UNetTraining.augment` also scale
(0.3-1.5x: zoomed out onto a canvas of the field's own background colour, or zoomed in by the
crop), Gaussian blur (sigma 0-1.2 px), vignetting (corners 0-50 % darker), a background tint
(green and blue gains 0.8-1.05), hue (+-0.05 turn) and saturation (0.6-1.4x), and JPEG
re-compression at quality 40-90 for half the samples. Image and targets move together.
"""

from __future__ import annotations

import copy
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import nn

from marrowscope.core.errors import FailedPrecondition
from marrowscope.segmentation.detection_eval import Box, read_yolo_boxes
from marrowscope.segmentation.learned import model_input
from marrowscope.segmentation.simulated_lab import jpeg, tint_and_stain, vignette

from .trainer import PARITY_TOLERANCE

log = logging.getLogger(__name__)

# Output channels, in this order (the ONNX model's metadata lists them too).
CHANNELS = ("wbc_cell", "wbc_core", "rbc_core", "platelet_core")
CORE_SCALE = 0.5  # core ellipse axes / cell ellipse axes
# The images are normalised inside the exported model, so its input is plain RGB / 255.
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class AnnotatedField:
    """A field image (RGB, possibly downscaled) and its boxes in that image's pixels."""

    name: str
    rgb: np.ndarray
    wbc: list[Box]
    rbc: list[Box]
    platelets: list[Box]


def load_yolo_fields(folder: Path, max_side: int = 320) -> list[AnnotatedField]:
    """``folder/images/*.jpg`` with ``folder/labels/*.txt`` (class 0 WBC, 1 RBC, 2 platelet),
    downscaled to ``max_side`` (training runs far below that, so nothing is lost)."""
    fields = []
    for path in sorted((folder / "images").glob("*.jpg")):
        image = Image.open(path).convert("RGB")
        width, height = image.size
        scale = min(1.0, max_side / max(width, height))
        if scale < 1.0:
            image = image.resize(
                (round(width * scale), round(height * scale)), Image.Resampling.BILINEAR
            )
        label = folder / "labels" / f"{path.stem}.txt"
        boxes = [
            [tuple(v * scale for v in b) for b in read_yolo_boxes(label, width, height, k)]
            for k in (0, 1, 2)
        ]
        fields.append(AnnotatedField(path.stem, np.asarray(image), *boxes))  # type: ignore[arg-type]
    if not fields:
        raise FailedPrecondition(f"no images under {folder / 'images'}: expected YOLO layout")
    return fields


def split_fields(
    fields: Sequence[AnnotatedField], seed: int
) -> tuple[list[AnnotatedField], list[AnnotatedField]]:
    """(training, validation): a seeded fifth held out to pick the checkpoint."""
    order = np.random.default_rng(seed).permutation(len(fields))
    held = set(order[: len(fields) // 5].tolist())
    return (
        [f for i, f in enumerate(fields) if i not in held],
        [f for i, f in enumerate(fields) if i in held],
    )


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(True),
    )


class FieldUNet(nn.Module):
    """U-Net (Ronneberger 2015) with ``depth`` poolings; ``width`` channels at full resolution.
    Input: RGB in [0, 1], NCHW, sides divisible by 2**depth. Output: per-pixel probabilities
    of :data:`CHANNELS`."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.down = nn.ModuleList([_block(3, widths[0])])
        self.down.extend(_block(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)
        )
        self.merge = nn.ModuleList(_block(2 * widths[i], widths[i]) for i in range(depth))
        self.head = nn.Conv2d(widths[0], len(CHANNELS), 1)

    def logits(self, rgb: torch.Tensor) -> torch.Tensor:
        x = (rgb - self.mean) / self.std
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([skips[i], self.up[i](x)], dim=1))
        return self.head(x)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(rgb))


def render_targets(boxes: Sequence[Sequence[Box]], size: int) -> np.ndarray:
    """Targets (len(CHANNELS), size, size) for boxes already in ``size`` x ``size`` pixels:
    ``boxes`` = (wbc, rbc, platelets)."""
    target = np.zeros((len(CHANNELS), size, size), np.float32)
    wbc, rbc, platelets = boxes
    for channel, group, scale in (
        (0, wbc, 1.0),
        (1, wbc, CORE_SCALE),
        (2, rbc, CORE_SCALE),
        (3, platelets, CORE_SCALE),
    ):
        for x, y, w, h in group:
            cx, cy, rx, ry = x + w / 2, y + h / 2, max(w * scale / 2, 0.7), max(h * scale / 2, 0.7)
            x0, x1 = max(0, int(cx - rx)), min(size, int(np.ceil(cx + rx)) + 1)
            y0, y1 = max(0, int(cy - ry)), min(size, int(np.ceil(cy + ry)) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            inside = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1.0
            target[channel, y0:y1, x0:x1][inside] = 1.0
    return target


ZOOM_OUT_PROBABILITY = 0.5  # with augmentation: the field shrunk onto a background canvas
MIN_SCALE, MAX_SCALE = 0.3, 1.5  # of the field's side in the model's input
BACKGROUND_PERCENTILE = 95  # per channel: the field's bright background


def training_sample(
    field: AnnotatedField, size: int, rng: np.random.Generator | None, augment: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(image HWC uint8, targets CHW) at ``size``; with ``rng``: a random crop of 70-100 % of
    each side, flips, quarter turns and colour gains, the same for image and targets. With
    ``rng`` and ``augment`` also what another lab's microscope and camera change (see the
    module's docstring): half the samples are zoomed out to 0.3-1x of the side (the field
    shrunk onto a canvas of its own background colour at a random place), the others zoomed
    in by a crop of 1/1.5-1 of each side; then blur, a background tint, hue and saturation,
    vignetting and, for half, JPEG re-compression. Deterministic for a given ``rng`` state."""
    height, width = field.rgb.shape[:2]
    x0, y0, cw, ch = 0.0, 0.0, float(width), float(height)
    # The field's part of the output: (left, top, width, height) in output pixels.
    px, py, pw, ph = 0, 0, size, size
    if rng is not None and augment and rng.random() < ZOOM_OUT_PROBABILITY:
        scale, aspect = rng.uniform(MIN_SCALE, 1.0), rng.uniform(0.85, 1.15)
        pw, ph = (max(4, min(size, round(size * v))) for v in (scale * aspect, scale / aspect))
        px, py = int(rng.integers(size - pw + 1)), int(rng.integers(size - ph + 1))
    elif rng is not None:
        low = 1 / MAX_SCALE if augment else 0.7
        cw, ch = width * rng.uniform(low, 1.0), height * rng.uniform(low, 1.0)
        x0, y0 = rng.uniform(0, width - cw), rng.uniform(0, height - ch)
    if (pw, ph) == (size, size):
        image = model_input(field.rgb, size, box=(x0, y0, x0 + cw, y0 + ch))
    else:
        background = np.percentile(field.rgb.reshape(-1, 3), BACKGROUND_PERCENTILE, axis=0)
        image = np.empty((size, size, 3), np.uint8)
        image[:] = np.round(background).astype(np.uint8)
        shrunk = Image.fromarray(field.rgb).resize((pw, ph), Image.Resampling.BILINEAR)
        image[py : py + ph, px : px + pw] = np.asarray(shrunk)
    sx, sy = pw / cw, ph / ch

    def moved(group: list[Box]) -> list[Box]:
        out = []
        for x, y, w, h in group:
            bx0, by0 = max(0.0, (x - x0) * sx), max(0.0, (y - y0) * sy)
            bx1, by1 = min(pw, (x + w - x0) * sx), min(ph, (y + h - y0) * sy)
            # A cell cut by the crop keeps its full ellipse (centre and size from the box as
            # annotated), unless too little of it is left to recognise.
            if (bx1 - bx0) * (by1 - by0) >= 0.3 * w * sx * h * sy:
                out.append((px + (x - x0) * sx, py + (y - y0) * sy, w * sx, h * sy))
        return out

    target = render_targets([moved(field.wbc), moved(field.rbc), moved(field.platelets)], size)
    if rng is not None:
        turns = int(rng.integers(4))
        image, target = np.rot90(image, turns, (0, 1)), np.rot90(target, turns, (1, 2))
        if rng.random() < 0.5:
            image, target = image[:, ::-1], target[:, :, ::-1]
        gains = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.9, 1.1)
        image = np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)
        if augment:
            image = _another_lab(np.ascontiguousarray(image), rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(target)


def _another_lab(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photometric part of the augmentation: what a softer lens, a tinted background,
    another stain batch, uneven illumination and stronger compression do to ``image``. Draws
    the same number of values from ``rng`` whatever they are."""
    sigma, strength = float(rng.uniform(0.0, 1.2)), float(rng.uniform(0.0, 0.5))
    tint = (1.0, float(rng.uniform(0.8, 1.05)), float(rng.uniform(0.8, 1.05)))
    hue, saturation = float(rng.uniform(-0.05, 0.05)), float(rng.uniform(0.6, 1.4))
    compress, quality = rng.random() < 0.5, int(rng.integers(40, 91))
    if sigma > 0.05:
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))
    image = vignette(tint_and_stain(image, tint, hue, saturation), strength)
    return jpeg(image, quality) if compress else image


def _batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    array = np.stack(images).astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice per channel (Dice keeps small cores from being
    drowned by background pixels)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(0, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3)) + 1)
    return bce + dice.mean()


@dataclass(frozen=True, kw_only=True)
class UNetTraining:
    """The measured recipe (``bench/segmentation_unet.py``): the whole field at 128 px, width
    8, AdamW with a one-cycle schedule; crops, flips, turns and colour gains. ``augment`` adds
    the scale, blur, vignetting, background-tint, hue / saturation and JPEG augmentation of
    :func:`training_sample`; it is off by default because it did not help on TXL-PBC val,
    neither whole-field nor at the canonical scale (``docs/benchmarks.md``)."""

    input_size: int = 128  # the field is squeezed to this side, as the service does
    width: int = 8
    depth: int = 4
    epochs: int = 40
    batch_size: int = 8
    learning_rate: float = 3e-3
    seed: int = 0
    threads: int = 0
    augment: bool = False


@dataclass(kw_only=True)
class TrainedFieldUNet:
    model: FieldUNet
    onnx_bytes: bytes
    best_epoch: int
    best_validation_loss: float
    curve: list[dict]
    seconds: float
    images_per_s: float


def train_field_unet(
    train: Sequence[AnnotatedField],
    validation: Sequence[AnnotatedField],
    params: UNetTraining = UNetTraining(),
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainedFieldUNet:
    """AdamW with a one-cycle schedule (warm-up, then cosine annealing); the checkpoint with the
    lowest validation loss (training loss without validation fields) is kept, exported to ONNX
    and checked against PyTorch."""
    if not train:
        raise FailedPrecondition("no training fields")
    if params.input_size % 2**params.depth:
        raise FailedPrecondition(f"input_size must be divisible by {2**params.depth}")
    if params.threads:
        torch.set_num_threads(params.threads)
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    model = FieldUNet(params.width, params.depth).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimiser = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, weight_decay=1e-4)
    steps = params.epochs * max(1, -(-len(train) // params.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, params.learning_rate, total_steps=steps
    )
    held_out = [training_sample(f, params.input_size, None) for f in validation]
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    curve: list[dict] = []
    started = time.perf_counter()
    for epoch in range(1, params.epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        total = 0.0
        for start in range(0, len(order), params.batch_size):
            samples = [
                training_sample(train[i], params.input_size, rng, params.augment)
                for i in order[start : start + params.batch_size]
            ]
            loss = _loss(
                model.logits(_batch([s[0] for s in samples])),
                torch.from_numpy(np.stack([s[1] for s in samples])),
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(samples)
        train_loss = total / len(train)
        validation_loss = _evaluate(model, held_out, params.batch_size) if held_out else train_loss
        point = {
            "epoch": epoch,
            "train_loss": round(train_loss, 4),
            "validation_loss": round(validation_loss, 4),
        }
        curve.append(point)
        if on_epoch:
            on_epoch(point)
        if validation_loss < best_loss:
            best_loss, best_epoch = validation_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
    seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    model.eval()
    probe = _batch(
        [s[0] for s in held_out[:4]] or [training_sample(train[0], params.input_size, None)[0]]
    )
    onnx_bytes = export_onnx(model, probe)
    return TrainedFieldUNet(
        model=model,
        onnx_bytes=onnx_bytes,
        best_epoch=best_epoch,
        best_validation_loss=best_loss,
        curve=curve,
        seconds=seconds,
        images_per_s=params.epochs * len(train) / seconds,
    )


@torch.no_grad()
def _evaluate(model: FieldUNet, samples: list[tuple[np.ndarray, np.ndarray]], batch: int) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        loss = _loss(
            model.logits(_batch([s[0] for s in chunk])),
            torch.from_numpy(np.stack([s[1] for s in chunk])),
        )
        total += float(loss) * len(chunk)
    return total / len(samples)


def export_onnx(model: FieldUNet, probe: torch.Tensor) -> bytes:
    """ONNX with dynamic batch and sides; refused unless ONNX Runtime matches PyTorch on
    ``probe`` within :data:`PARITY_TOLERANCE`."""
    model.eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (probe.contiguous(),),
        buffer,  # type: ignore[arg-type]  # a file object works
        input_names=["rgb"],
        output_names=["probabilities"],
        dynamic_axes={
            "rgb": {0: "batch", 2: "height", 3: "width"},
            "probabilities": {0: "batch", 2: "height", 3: "width"},
        },
        opset_version=17,
        dynamo=False,
    )
    data = _with_metadata(buffer.getvalue(), input_size=int(probe.shape[-1]))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(probe).numpy()
    got = session.run(None, {"rgb": probe.contiguous().numpy()})[0]
    difference = float(np.abs(expected - got).max())
    if difference > PARITY_TOLERANCE:
        raise FailedPrecondition(f"ONNX export differs from PyTorch by {difference:.2e}")
    return data


def _with_metadata(data: bytes, input_size: int) -> bytes:
    """What the segmentation service needs to run the model: channel order, core scale and
    the side the model was trained at."""
    import onnx

    proto = onnx.load_from_string(data)
    for key, value in (
        ("marrowscope.channels", ",".join(CHANNELS)),
        ("marrowscope.core_scale", str(CORE_SCALE)),
        ("marrowscope.input_size", str(input_size)),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()
