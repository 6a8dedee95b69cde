"""The paper's classifier (Fig. 10): 8 Conv2D layers with BatchNorm, max pooling and
squeeze-and-excitation blocks, softmax over the taxonomy's classes."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


class SECNN(nn.Module):
    """Four stages of (conv, conv, SE, max-pool): 8 convolutions; ``width`` sets stage 1."""

    def __init__(self, num_classes: int, width: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        widths = [width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        cin = 3
        for cout in widths:
            layers += [*_conv(cin, cout), *_conv(cout, cout), SqueezeExcitation(cout)]
            layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (training uses cross-entropy on these)."""
        return self.head(self.features(x))


class PixelInput(nn.Module):
    """Pixels (uint8 or float, 0-255) -> the network's input, normalised per channel.

    The one normalisation: training applies it to every batch, and the export puts it at the
    head of the ONNX graph, so the served model takes the preprocessed pixels as uint8. The
    float32 operations are those of ``core.preprocess.normalise`` in the same order, so the
    values are bit for bit what models with float input were trained and served on.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        # Not in the state dict: the input spec holds them.
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(shape), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() / 255.0 - self.mean) / self.std


class WithSoftmax(nn.Module):
    """What we export: probabilities, so every consumer gets the same numbers."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


ARCHITECTURES = {"se_cnn": SECNN}


def build_model(architecture: str, num_classes: int, width: int = 32) -> nn.Module:
    try:
        return ARCHITECTURES[architecture](num_classes, width=width)
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}") from None


def count_flops(model: nn.Module, size: int) -> int:
    """Floating-point operations of one forward pass on a ``size`` x ``size`` image
    (2 per multiply-add of convolutions and linear layers; the rest is negligible)."""
    total = 0

    def conv_hook(module: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += 2 * kernel * output.numel() // output.shape[0]

    def linear_hook(module: nn.Linear, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += 2 * module.in_features * module.out_features

    handles = [
        m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    return total
