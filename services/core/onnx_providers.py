"""ONNX Runtime execution providers: CUDA first where it actually loads, CPU always."""

from __future__ import annotations

import onnxruntime as ort


def choose_providers(prefer_cuda: bool) -> list[str]:
    """The providers to ask a session for. The CPU image has no CUDA provider and the GPU image
    has it even on a CPU node, where ONNX Runtime falls back to CPU; the session's
    ``get_providers()`` says which one is in use."""
    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if prefer_cuda else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]
