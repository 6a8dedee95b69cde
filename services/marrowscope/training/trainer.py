"""Training and ONNX export: plain PyTorch, no database or network (unit-testable).

The recipe is the paper's: SGD with momentum, lr 0.01 for a first training and 0.005 when
warm-started, rotation/flip/shift augmentation, the best validation checkpoint kept.
"""

from __future__ import annotations

import copy
import io
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from marrowscope.core.errors import FailedPrecondition
from marrowscope.core.preprocess import InputSpecData

from . import ood
from .augment import augment_batch
from .model import SECNN, PixelInput, WithSoftmax, build_model

log = logging.getLogger(__name__)
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True, kw_only=True)
class HyperParameters:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 0.0  # 0 = the paper's default for first / warm-started training
    momentum: float = 0.9
    input_size: int = 96
    seed: int = 0
    early_stopping_patience: int = 0
    augment: bool = True
    architecture: str = "se_cnn"
    width: int = 32
    threads: int = 0  # 0 = torch's default
    # "constant" is the paper's recipe; "cosine" anneals to zero over the epochs (steadier
    # validation at CPU scale, where far fewer epochs are affordable than the paper's 250).
    lr_schedule: str = "constant"
    # BatchNorm statistics recomputed after each epoch from this many training images, without
    # augmentation (0 = keep the running averages). The running averages follow the last few
    # augmented batches, so validation swung by several points from epoch to epoch even where
    # the learning rate had annealed to nearly zero; exact statistics of un-augmented images
    # match what the model sees at inference.
    precise_bn_images: int = 2048

    def effective_lr(self, warm_start: bool) -> float:
        if self.learning_rate > 0:
            return self.learning_rate
        return 0.005 if warm_start else 0.01


LR_SCHEDULES = ("constant", "cosine")


@dataclass(kw_only=True)
class EpochResult:
    epoch: int
    train_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    seconds: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class TrainedModel:
    onnx_bytes: bytes
    state_dict_bytes: bytes
    curve: list[EpochResult]
    best_epoch: int
    metrics: dict[str, float] = field(default_factory=dict)


class Cancelled(Exception):
    pass


def _evaluate(
    model: torch.nn.Module, to_input: PixelInput, x: torch.Tensor, y: torch.Tensor, batch: int
) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            xb = to_input(x[start : start + batch]).contiguous(memory_format=torch.channels_last)
            logits = model(xb)
            yb = y[start : start + batch]
            loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    n = max(len(x), 1)
    return loss / n, correct / n


def recompute_batchnorm(
    model: torch.nn.Module,
    x: torch.Tensor,
    batch: int = 128,
    to_input: torch.nn.Module | None = None,
) -> None:
    """Set every BatchNorm's running mean and variance to the exact statistics of ``x``
    (equal-weight average over batches, each through ``to_input`` when given), leaving the
    weights as they are."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or len(x) < 2:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = x[start : start + batch]
            if len(xb) >= 2:
                xb = to_input(xb) if to_input is not None else xb
                model(xb.contiguous(memory_format=torch.channels_last))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def train(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    num_classes: int,
    spec: InputSpecData,
    hyper: HyperParameters,
    parent_state: bytes | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainedModel:
    """Train on preprocessed pixels (N x 3 x S x S uint8, as ``decode_for_model`` gives them
    for ``spec``; labels int64). Each batch is normalised by the model's own ``PixelInput``,
    so the arrays stay a quarter of their float size."""
    if spec.dtype != "uint8" or x_train.dtype != np.uint8 or x_val.dtype != np.uint8:
        raise ValueError(
            "training takes uint8 pixels and an input spec of dtype uint8 "
            f"(got spec {spec.dtype}, arrays {x_train.dtype} / {x_val.dtype})"
        )
    if hyper.threads:
        torch.set_num_threads(hyper.threads)
    torch.manual_seed(hyper.seed)
    generator = torch.Generator().manual_seed(hyper.seed)
    model = build_model(hyper.architecture, num_classes, hyper.width)
    if parent_state is not None:
        model.load_state_dict(torch.load(io.BytesIO(parent_state), weights_only=True))
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    lr = hyper.effective_lr(parent_state is not None)
    optimiser = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=hyper.momentum, weight_decay=1e-4
    )
    if hyper.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {hyper.lr_schedule!r} (constant or cosine)")
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(hyper.epochs, 1))
        if hyper.lr_schedule == "cosine"
        else None
    )
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val)
    to_input = PixelInput(spec.mean, spec.std)
    black = to_input(torch.zeros(1, 3, 1, 1)).flatten()  # black after normalising

    curve: list[EpochResult] = []
    best_acc, best_epoch, best_state, stale = -1.0, 0, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, hyper.epochs + 1):
        if should_stop and should_stop():
            raise Cancelled()
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        total_loss, correct = 0.0, 0
        for start in range(0, len(order), hyper.batch_size):
            index = order[start : start + hyper.batch_size]
            if len(index) < 2:
                continue  # BatchNorm needs two samples
            xb, yb = to_input(xt[index]), yt[index]
            if hyper.augment:
                xb = augment_batch(xb, black, generator)
            xb = xb.contiguous(memory_format=torch.channels_last)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total_loss += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == yb).sum())
        if schedule is not None:
            schedule.step()
        if hyper.precise_bn_images:
            sample = torch.randperm(len(xt), generator=generator)[: hyper.precise_bn_images]
            recompute_batchnorm(model, xt[sample], to_input=to_input)
        val_loss, val_acc = _evaluate(model, to_input, xv, yv, 128) if len(xv) else (0.0, 0.0)
        result = EpochResult(
            epoch=epoch,
            train_loss=total_loss / max(len(xt), 1),
            train_accuracy=correct / max(len(xt), 1),
            validation_loss=val_loss,
            validation_accuracy=val_acc,
            seconds=time.perf_counter() - started,
        )
        curve.append(result)
        if on_epoch:
            on_epoch(result)
        if val_acc > best_acc:
            best_acc, best_epoch, stale = val_acc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if hyper.early_stopping_patience and stale >= hyper.early_stopping_patience:
                log.info("early stop at epoch %d (best %d)", epoch, best_epoch)
                break

    model.load_state_dict(best_state)
    model = model.to(memory_format=torch.contiguous_format).eval()
    state_buffer = io.BytesIO()
    torch.save(model.state_dict(), state_buffer)
    # How far served cells lie from these training cells (exported in the graph).
    distance = (
        ood.calibrate(model, to_input, xt, yt, xv, num_classes)
        if isinstance(model, SECNN)
        else None
    )
    onnx_bytes = export_onnx(model, spec, distance)
    check_parity(model, onnx_bytes, xv[:64] if len(xv) else xt[:64], spec)
    if distance is not None:  # the threshold from the scores the exported graph serves
        distance = replace(distance, threshold=served_threshold(onnx_bytes, xv if len(xv) else xt))
    return TrainedModel(
        onnx_bytes,
        state_buffer.getvalue(),
        curve,
        best_epoch,
        {
            "validation_accuracy": best_acc,
            "best_epoch": float(best_epoch),
            **({"ood_threshold": distance.threshold} if distance else {}),
        },
    )


def served_threshold(onnx_bytes: bytes, pixels: torch.Tensor) -> float:
    """The distance threshold as the exported graph computes the scores (float32), on
    held-out cells: so a served score is judged against a threshold of the same arithmetic."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    scores = [
        session.run(None, {"image": pixels[i : i + 256].numpy()})[1]
        for i in range(0, len(pixels), 256)
    ]
    return float(np.percentile(np.concatenate(scores), ood.VALIDATION_PERCENTILE))


def export_onnx(
    model: torch.nn.Module, spec: InputSpecData, distance: ood.OodParameters | None = None
) -> bytes:
    """One self-contained ONNX file (opset 17) with a dynamic batch dimension: uint8 pixels in
    (normalised in the graph), probabilities out, and with ``distance`` a second output
    ``ood_score`` (each cell's distance from the training cells, see ``ood``)."""
    if spec.dtype != "uint8":
        raise ValueError("models are exported with uint8 input; the spec says " + spec.dtype)
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 3, spec.size, spec.size, dtype=torch.uint8)
    head: torch.nn.Module = WithSoftmax(model)
    outputs = ["probabilities"]
    if distance is not None:
        if not isinstance(model, SECNN):
            raise ValueError("the distance score is defined for the SE-CNN's features")
        head = ood.ProbabilitiesAndDistance(model, distance)
        outputs.append("ood_score")
    torch.onnx.export(
        torch.nn.Sequential(PixelInput(spec.mean, spec.std), head).eval(),
        (dummy,),
        buffer,  # type: ignore[arg-type]  # a file object works; the stubs say path only
        input_names=["image"],
        output_names=outputs,
        dynamic_axes={"image": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
        opset_version=17,
        dynamo=False,
    )
    return buffer.getvalue()


def check_parity(
    model: torch.nn.Module, onnx_bytes: bytes, batch: torch.Tensor, spec: InputSpecData
) -> float:
    """Refuse a model whose ONNX output differs from PyTorch (max abs diff, argmax) on
    ``batch`` (uint8 pixels)."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        normalised = PixelInput(spec.mean, spec.std)(batch)
        expected = torch.softmax(model.eval()(normalised), dim=1).numpy()
    got = session.run(None, {"image": batch.numpy()})[0]
    diff = float(np.abs(expected - got).max()) if len(batch) else 0.0
    if diff > PARITY_TOLERANCE or not np.array_equal(expected.argmax(1), got.argmax(1)):
        raise FailedPrecondition(
            f"ONNX export differs from PyTorch (max abs diff {diff:.2e} > {PARITY_TOLERANCE}); "
            "the model was not registered"
        )
    return diff
