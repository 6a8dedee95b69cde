"""The GPU check and the sessions the services open: on this CPU machine the check must say
the model is not on CUDA, why, and still measure; a GPU build whose CUDA provider does not load
must be logged as a warning."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from marrowscope.cli.main import GPU_CHECK_EXIT, main
from marrowscope.core import onnx_providers
from marrowscope.core.onnx_providers import CPU, CUDA, choose_providers, open_session
from marrowscope.core.preprocess import InputSpecData
from marrowscope.training.model import build_model
from marrowscope.training.trainer import export_onnx

HAS_CUDA = CUDA in ort.get_available_providers()


@pytest.fixture(scope="module")
def tiny_model() -> bytes:
    torch.manual_seed(0)
    return export_onnx(build_model("se_cnn", 5, width=4).eval(), InputSpecData(size=32))


def test_gpu_check_reports_provider_parity_and_speed(tmp_path: Path, tiny_model: bytes) -> None:
    model = tmp_path / "classifier.onnx"
    model.write_bytes(tiny_model)
    out = tmp_path / "gpu_check.json"
    args = ["gpu-check", "--model", str(model), "--batches", "1", "8", "--seconds", "0.05"]
    status = main([*args, "--json", str(out)])
    report = json.loads(out.read_text())
    figures = report["models"]["classifier.onnx"]
    assert figures["input"] == "tensor(uint8) [3, 32, 32]"
    assert figures["parity_max_abs_diff"] <= 1e-4 and figures["parity_argmax_agreement"] == 1.0
    assert set(figures["images_per_s"]) == {"1", "8"}
    assert all(r["served_provider"] > 0 and r["cpu"] > 0 for r in figures["images_per_s"].values())
    assert set(figures["first_run_ms"]) == {"1", "5", "23", "64"}
    if HAS_CUDA:  # the GPU image on a GPU node
        assert (figures["provider"], report["verdict"], status) == (CUDA, "ok", 0)
    else:
        assert figures["provider"] == CPU and report["verdict"] == "not-on-cuda"
        assert status == GPU_CHECK_EXIT["not-on-cuda"] == 3
        assert "no CUDA provider" in report["reason"] and "GPU image" in report["reason"]


def test_gpu_check_names_a_disabled_cuda_preference(
    tmp_path: Path, tiny_model: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARROWSCOPE_INFERENCE_PREFER_CUDA", "false")
    model = tmp_path / "classifier.onnx"
    model.write_bytes(tiny_model)
    out = tmp_path / "gpu_check.json"
    status = main(
        [
            "gpu-check",
            "--model",
            str(model),
            "--batches",
            "2",
            "--seconds",
            "0.02",
            "--json",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert status == 3 and report["models"]["classifier.onnx"]["provider"] == CPU
    assert "MARROWSCOPE_INFERENCE_PREFER_CUDA=false" in report["reason"]


def test_cpu_build_runs_on_cpu_and_says_so_quietly(
    tiny_model: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    if HAS_CUDA:
        pytest.skip("this ONNX Runtime has the CUDA provider; the CPU build's case is moot")
    assert choose_providers(True, "HEURISTIC") == [CPU]
    with caplog.at_level(logging.INFO, logger=onnx_providers.__name__):
        session = open_session(tiny_model, ort.SessionOptions(), prefer_cuda=True)
    assert session.get_providers()[0] == CPU
    (record,) = caplog.records
    assert record.levelno == logging.INFO and "no CUDA provider" in record.getMessage()


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_gpu_build_whose_cuda_does_not_load_warns(
    tiny_model: bytes, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU image on a node without a usable GPU: ONNX Runtime lists CUDA but the session
    comes up on CPU. Here the CPU build is made to list CUDA; ONNX Runtime then falls back
    exactly as it does there."""
    if HAS_CUDA:
        pytest.skip("a real CUDA provider is present; its fallback cannot be provoked here")
    listed = [CUDA, *ort.get_available_providers()]
    monkeypatch.setattr(onnx_providers.ort, "get_available_providers", lambda: listed)
    wanted = choose_providers(True, "HEURISTIC")
    assert wanted == [(CUDA, {"cudnn_conv_algo_search": "HEURISTIC"}), CPU]
    with caplog.at_level(logging.INFO, logger=onnx_providers.__name__):
        session = open_session(tiny_model, ort.SessionOptions(), True, "HEURISTIC")
    assert session.get_providers()[0] == CPU
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "did not load" in record.getMessage()
