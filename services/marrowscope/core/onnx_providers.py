"""ONNX Runtime execution providers: CUDA first where it actually loads, CPU always.

The services open their serving sessions here, so a GPU node whose model quietly
runs on the CPU (the CPU image, a missing driver, no GPU visible to the pod) says so in the
log, and every caller reports the provider really in use.
"""

from __future__ import annotations

import logging
from typing import Literal

import onnxruntime as ort

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# How cuDNN picks convolution algorithms. ONNX Runtime's default, EXHAUSTIVE, benchmarks every
# algorithm on the first run of each new input shape; the inference service's micro-batches
# come in every size from 1 to max_batch, so it uses HEURISTIC (no first-run benchmarking).
ConvAlgoSearch = Literal["HEURISTIC", "EXHAUSTIVE", "DEFAULT"]

Provider = str | tuple[str, dict[str, str]]

log = logging.getLogger(__name__)


def choose_providers(
    prefer_cuda: bool, conv_algo_search: ConvAlgoSearch | None = None
) -> list[Provider]:
    """The providers to ask a session for. The CPU image has no CUDA provider and the GPU image
    has it even on a CPU node, where ONNX Runtime falls back to CPU; the session's
    ``get_providers()`` says which one is in use."""
    if prefer_cuda and CUDA in ort.get_available_providers():
        options: dict[str, str] = {}
        if conv_algo_search:
            options["cudnn_conv_algo_search"] = conv_algo_search
        return [(CUDA, options), CPU]
    return [CPU]


def cpu_fallback_reason() -> str:
    """Why a session that preferred CUDA runs on the CPU: what to fix, in words."""
    if CUDA not in ort.get_available_providers():
        return (
            f"this ONNX Runtime build ({ort.__version__}) has no CUDA provider: deploy the GPU "
            "image (deploy/Dockerfile.gpu, onnxruntime-gpu) on the GPU nodes"
        )
    return (
        "the CUDA provider is built in but did not load: no GPU is visible to this process, or "
        "the NVIDIA driver / container toolkit is missing on the node (check `nvidia-smi` in "
        "the pod and the nvidia.com/gpu resource limit)"
    )


def open_session(
    model: bytes,
    options: ort.SessionOptions,
    prefer_cuda: bool,
    conv_algo_search: ConvAlgoSearch | None = None,
) -> ort.InferenceSession:
    """A session on CUDA where it loads (when ``prefer_cuda``), else on the CPU.

    A GPU image that ends up on the CPU is logged as a warning with the reason: the model then
    runs many times slower than the deployment was sized for.
    """
    session = ort.InferenceSession(
        model, sess_options=options, providers=choose_providers(prefer_cuda, conv_algo_search)
    )
    in_use = session.get_providers()[0]
    if prefer_cuda and in_use != CUDA:
        level = logging.WARNING if CUDA in ort.get_available_providers() else logging.INFO
        log.log(level, "model runs on %s: %s", in_use, cpu_fallback_reason())
    return session
