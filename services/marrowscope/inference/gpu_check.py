"""The classifier's GPU check: does the model run on the CUDA execution provider where the
inference service runs, does it give the CPU's answers, and how fast is it.

Run it in the GPU image on a GPU node (``marrowscope gpu-check``, e.g. through
``kubectl exec`` into the inference pod). The CUDA session is opened exactly as the service
opens its model (:func:`~.classifier.open_model_session`, settings from the environment); the
CPU session beside it is the reference for parity and speed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from marrowscope.core.onnx_providers import CPU, CUDA, cpu_fallback_reason
from marrowscope.core.preprocess import InputSpecData, decode_for_model, input_dtype_of

from .classifier import open_model_session
from .settings import InferenceSettings

FIRST_RUN_BATCHES = (1, 5, 23, 64)  # batch sizes a micro-batcher produces, each new to cuDNN


@dataclass(frozen=True, kw_only=True)
class GpuCheckOptions:
    sizes: tuple[int, ...] = (96, 128, 282)
    batches: tuple[int, ...] = (1, 64, 256)
    width: int = 16
    seconds: float = 3.0  # per measured rate
    model: Path | None = None  # an exported classifier (its own input size); else fresh SE-CNNs
    data: Path | None = None  # cell images for the parity check; else random pixels
    tolerance: float = 1e-4  # the export's parity standard


def gpu_description() -> str:
    """The node's GPUs as ``nvidia-smi`` lists them, or why there is nothing to list."""
    if shutil.which("nvidia-smi") is None:
        return "no nvidia-smi on this node"
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        listed = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"nvidia-smi failed: {error}"
    return (listed.stdout or listed.stderr).strip() or "nvidia-smi listed nothing"


def images_per_second(session: ort.InferenceSession, batch: np.ndarray, seconds: float) -> float:
    """Images/s of ``session`` on ``batch`` (host arrays in and out, as the service runs it),
    after a warm-up run."""
    session.run(None, {"image": batch})
    started, images = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        session.run(None, {"image": batch})
        images += len(batch)
    return round(images / (time.perf_counter() - started), 1)


def _inputs(session: ort.InferenceSession, count: int, data: Path | None) -> np.ndarray:
    """``count`` model inputs: cells from ``data`` (cycled) where given, else random pixels."""
    spec_input = session.get_inputs()[0]
    size = int(spec_input.shape[2])
    spec = InputSpecData(size=size, dtype=input_dtype_of(spec_input.type))
    if data is not None:
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
        if not files:
            raise FileNotFoundError(f"no .jpg or .png cell images under {data}")
        cells = [decode_for_model(f.read_bytes(), spec) for f in files[:count]]
        return np.stack([cells[i % len(cells)] for i in range(count)])
    rng = np.random.default_rng(0)
    if spec.dtype == "uint8":
        return rng.integers(0, 256, (count, 3, size, size), dtype=np.uint8)
    return rng.standard_normal((count, 3, size, size), dtype=np.float32)


def _first_runs_ms(model: bytes, settings: InferenceSettings, x: np.ndarray) -> dict[str, float]:
    """Milliseconds of the first run at each new batch size, on a new session (what a
    micro-batch of a size not seen before costs; cuDNN's algorithm search shows here)."""
    session = open_model_session(model, settings)
    out = {}
    for batch in FIRST_RUN_BATCHES:
        started = time.perf_counter()
        session.run(None, {"image": x[:batch]})
        out[str(batch)] = round(1000 * (time.perf_counter() - started), 2)
    return out


def check_size(model: bytes, settings: InferenceSettings, options: GpuCheckOptions) -> dict:
    """Provider, parity and images/s of one exported model on CUDA (as served) and on CPU."""
    served = open_model_session(model, settings)
    reference = ort.InferenceSession(model, providers=[CPU])
    x = _inputs(served, max(max(options.batches), 64), options.data)
    got = served.run(None, {"image": x[:64]})[0]
    expected = reference.run(None, {"image": x[:64]})[0]
    figures: dict = {
        "provider": served.get_providers()[0],
        "input": f"{served.get_inputs()[0].type} {list(x.shape[1:])}",
        "parity_max_abs_diff": float(np.abs(got - expected).max()),
        "parity_argmax_agreement": float((got.argmax(1) == expected.argmax(1)).mean()),
        "first_run_ms": _first_runs_ms(model, settings, x),
        "images_per_s": {},
    }
    for batch in options.batches:
        figures["images_per_s"][str(batch)] = {
            "served_provider": images_per_second(served, x[:batch], options.seconds),
            "cpu": images_per_second(reference, x[:batch], options.seconds),
        }
    return figures


def run_gpu_check(
    options: GpuCheckOptions,
    settings: InferenceSettings,
    progress: Callable[[str], None] = lambda name: None,
    fresh_model: Callable[[int, int], bytes] | None = None,
) -> dict:
    """The whole check as a JSON-ready report; ``verdict`` is ``ok``, ``not-on-cuda`` or
    ``parity-failed``, and ``reason`` says what to fix. ``progress`` hears each model's name
    before it is checked. Without ``options.model``, ``fresh_model(size, width)`` exports an
    untrained classifier for each size (the caller brings it: serving code imports no
    training code)."""
    if options.model is None and fresh_model is None:
        raise ValueError("give a model file, or a fresh_model exporter for options.sizes")
    report: dict = {
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "gpu": gpu_description(),
        "settings": {
            "prefer_cuda": settings.prefer_cuda,
            "cudnn_conv_algo_search": settings.cudnn_conv_algo_search,
            "intra_op_threads": settings.intra_op_threads,
        },
        "tolerance": options.tolerance,
        "models": {},
    }
    # (name, how to get the model): exported one at a time, after its progress line
    models: list[tuple[str, Callable[[], bytes]]]
    if options.model is not None:
        models = [(options.model.name, options.model.read_bytes)]
    else:
        assert fresh_model is not None  # checked above
        models = [
            (f"se_cnn_w{options.width}_{size}px", partial(fresh_model, size, options.width))
            for size in options.sizes
        ]
    for name, load in models:
        progress(name)
        report["models"][name] = check_size(load(), settings, options)
    figures = list(report["models"].values())
    if any(f["provider"] != CUDA for f in figures):
        report["verdict"] = "not-on-cuda"
        report["reason"] = (
            "the inference service is configured not to use CUDA "
            "(MARROWSCOPE_INFERENCE_PREFER_CUDA=false)"
            if not settings.prefer_cuda
            else cpu_fallback_reason()
        )
    elif any(
        f["parity_max_abs_diff"] > options.tolerance or f["parity_argmax_agreement"] < 1
        for f in figures
    ):
        report["verdict"] = "parity-failed"
        report["reason"] = (
            f"CUDA's probabilities differ from the CPU's by more than {options.tolerance} or "
            "pick another class for some cells"
        )
    else:
        report["verdict"], report["reason"] = "ok", "the model is served on CUDA with CPU parity"
    return report


def print_report(report: dict) -> None:
    print(
        f"ONNX Runtime {report['onnxruntime']}; providers built in: "
        f"{', '.join(report['available_providers'])}"
    )
    print(f"GPU: {report['gpu']}")
    for name, f in report["models"].items():
        print(f"\n{name}: {f['input']} on {f['provider']}")
        print(
            f"  parity with CPU on 64 cells: max |diff| {f['parity_max_abs_diff']:.2e}, "
            f"same class {100 * f['parity_argmax_agreement']:.1f} %"
        )
        firsts = ", ".join(f"{b}: {ms:.0f} ms" for b, ms in f["first_run_ms"].items())
        print(f"  first run of a new batch size ({f['provider']}): {firsts}")
        print(f"  {'batch':>7} {f['provider']:>26} {'CPU':>12}   images/s")
        for batch, r in f["images_per_s"].items():
            print(f"  {batch:>7} {r['served_provider']:>26.0f} {r['cpu']:>12.0f}")
    print(f"\nverdict: {report['verdict']}: {report['reason']}")
