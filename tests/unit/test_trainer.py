"""A tiny real training run: the loss falls and the ONNX export matches PyTorch."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from marrowscope.core.errors import FailedPrecondition, InvalidArgument
from marrowscope.core.preprocess import InputSpecData, normalise, preprocess
from marrowscope.core.synthetic import make_cell
from marrowscope.training.augment import augment_batch
from marrowscope.training.model import PixelInput, build_model
from marrowscope.training.servicer import hyper_from_message
from marrowscope.training.trainer import HyperParameters, check_parity, train
from marrowscope.v1 import training_pb2


def test_training_learns_and_exports_a_matching_onnx_model() -> None:
    spec = InputSpecData(size=48)
    classes = ["LY", "EO", "PEB_BEB"]
    x = np.stack([preprocess(make_cell(c, i).rgb, spec) for c in classes for i in range(12)])
    y = np.array([k for k in range(3) for _ in range(12)], dtype=np.int64)
    hyper = HyperParameters(epochs=6, batch_size=12, input_size=48, width=8, augment=True)
    seen = []
    trained = train(x, y, x[::3], y[::3], 3, spec, hyper, on_epoch=seen.append)
    assert len(seen) == 6
    assert seen[-1].train_loss < seen[0].train_loss
    session = ort.InferenceSession(trained.onnx_bytes, providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"image": x[:5]})[0]
    assert probabilities.shape == (5, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    batch8 = session.run(None, {"image": x[:8]})[0]  # dynamic batch dimension
    assert batch8.shape == (8, 3)


def test_parity_check_refuses_a_different_model() -> None:
    spec = InputSpecData(size=32)
    model_a = build_model("se_cnn", 3, width=4).eval()
    model_b = build_model("se_cnn", 3, width=4).eval()
    from marrowscope.training.trainer import export_onnx

    onnx_b = export_onnx(model_b, spec)
    batch = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert check_parity(model_b, onnx_b, batch, spec) <= 1e-4
    with pytest.raises(FailedPrecondition, match="not registered"):
        check_parity(model_a, onnx_b, batch, spec)


def test_the_exported_model_takes_pixels_and_normalises_them_as_the_spec_says() -> None:
    from marrowscope.training.trainer import export_onnx

    spec = InputSpecData(size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    torch.manual_seed(0)
    model = build_model("se_cnn", 3, width=4).eval()
    session = ort.InferenceSession(export_onnx(model, spec), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    pixels = np.random.default_rng(0).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    # The normalisation is bit for bit the one float-input models were trained and served on.
    legacy = InputSpecData(size=32, mean=spec.mean, std=spec.std, dtype="float32")
    normalised = np.stack([normalise(p.transpose(1, 2, 0), legacy) for p in pixels])
    to_input = PixelInput(spec.mean, spec.std)
    assert np.array_equal(to_input(torch.from_numpy(pixels)).numpy(), normalised)
    levels = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16).repeat(3, axis=1)
    assert np.array_equal(
        to_input(torch.from_numpy(levels)).numpy()[0],
        normalise(levels[0].transpose(1, 2, 0), legacy),
    )
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(normalised)), dim=1).numpy()
    np.testing.assert_allclose(session.run(None, {"image": pixels})[0], expected, atol=1e-5)


def test_training_refuses_float_arrays() -> None:
    spec = InputSpecData(size=16)
    x = np.zeros((4, 3, 16, 16), np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="uint8"):
        train(x, y, x, y, 2, spec, HyperParameters(epochs=1, input_size=16, width=4))


def test_augmentation_fills_with_black_and_keeps_shape() -> None:
    black = torch.tensor([-2.0, -2.0, -2.0])
    x = torch.zeros(4, 3, 32, 32)
    out = augment_batch(x, black, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert float(out.min()) < -1.0  # corners rotated in from outside are black


def test_batchnorm_statistics_are_recomputed_exactly_from_unaugmented_images() -> None:
    from marrowscope.training.trainer import recompute_batchnorm

    torch.manual_seed(0)
    model = build_model("se_cnn", 3, width=4)
    first_conv, first_norm = model.features[0], model.features[1]
    x = torch.randn(64, 3, 32, 32) * 2 + 1
    first_norm.running_mean.fill_(7.0)  # stale statistics, as after augmented batches
    weights = {k: v.clone() for k, v in model.named_parameters()}
    recompute_batchnorm(model, x, batch=16)
    with torch.no_grad():
        activations = first_conv(x)  # what the first BatchNorm sees
    expected_mean = activations.mean(dim=(0, 2, 3))
    assert torch.allclose(first_norm.running_mean, expected_mean, atol=1e-5)
    expected_var = activations.var(dim=(0, 2, 3), unbiased=True)
    assert torch.allclose(first_norm.running_var, expected_var, rtol=0.05)
    assert first_norm.momentum == 0.1  # the training momentum comes back
    for name, value in model.state_dict().items():  # the weights were not touched
        if name in weights:
            assert torch.equal(value, weights[name]), name


def test_hyper_parameters_from_a_request_default_and_refuse_what_cannot_run() -> None:
    unset = hyper_from_message(training_pb2.HyperParameters(epochs=3), width=24)
    assert (unset.epochs, unset.width, unset.lr_schedule, unset.precise_bn_images) == (
        3,
        24,
        "constant",
        HyperParameters().precise_bn_images,
    )
    asked = training_pb2.HyperParameters(lr_schedule="cosine", precise_bn_images=0, width=8)
    hyper = hyper_from_message(asked, width=24)
    assert (hyper.lr_schedule, hyper.precise_bn_images, hyper.width) == ("cosine", 0, 8)
    with pytest.raises(InvalidArgument, match="'step' is not one of constant, cosine"):
        hyper_from_message(training_pb2.HyperParameters(lr_schedule="step"), width=24)
    with pytest.raises(InvalidArgument, match="precise_bn_images"):
        hyper_from_message(training_pb2.HyperParameters(precise_bn_images=-1), width=24)
