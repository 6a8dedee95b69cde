"""How far a cell lies from the model's training data: a Mahalanobis distance in the model's
own feature space (Lee et al., NeurIPS 2018), exported in the ONNX graph beside the
probabilities.

After training, the pooled features of the training cells give one mean per class and one
shared covariance (shrunk towards its diagonal so that it inverts with few cells); a cell's
score is its distance to the nearest class mean. The threshold is a high percentile of the
validation cells' scores (cells the model did not train on, from the same source): a cell
above it lies outside what the model was made for. Both are stored with the model version
(its metrics ``ood_threshold``), so every served score can be judged against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .model import SECNN, PixelInput

VALIDATION_PERCENTILE = 95.0
SHRINKAGE = 0.1  # share of the diagonal mixed into the shared covariance


@dataclass(frozen=True)
class OodParameters:
    means: np.ndarray  # classes x features (classes without cells: far away)
    precision: np.ndarray  # features x features
    threshold: float


def pooled_features(model: SECNN, x: torch.Tensor) -> torch.Tensor:
    """The SE-CNN's pooled features (the input of its classifier layer), for normalised
    input ``x``."""
    pooled: torch.Tensor = model.head[1](model.head[0](model.features(x)))
    return pooled


def features_of(model: SECNN, pixels: torch.Tensor, spec_input: PixelInput) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), 128):
            xb = spec_input(pixels[start : start + 128]).contiguous(
                memory_format=torch.channels_last
            )
            out.append(pooled_features(model, xb).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fit(
    features: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(class means, shared precision) of ``features``."""
    dim = features.shape[1]
    means = np.full((num_classes, dim), 1e3, dtype=np.float64)  # absent classes: never nearest
    centred = []
    for c in range(num_classes):
        members = features[labels == c]
        if len(members):
            means[c] = members.mean(axis=0)
            centred.append(members - means[c])
    residual = np.concatenate(centred)
    covariance = residual.T @ residual / max(1, len(residual) - 1)
    covariance = (1 - SHRINKAGE) * covariance + SHRINKAGE * np.diag(np.diag(covariance))
    covariance += 1e-6 * np.eye(dim)
    return means, np.linalg.inv(covariance)


def scores(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Each cell's Mahalanobis distance to its nearest class mean."""
    diff = features[:, None, :] - means[None, :, :]
    squared = np.einsum("bcf,fg,bcg->bc", diff, precision, diff)
    return np.sqrt(np.maximum(squared.min(axis=1), 0.0))


def calibrate(
    model: SECNN,
    spec_input: PixelInput,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    num_classes: int,
) -> OodParameters:
    """Fit on the training cells; the threshold from the validation cells (training cells
    when there are none)."""
    train_features = features_of(model, x_train, spec_input)
    means, precision = fit(train_features, y_train.numpy(), num_classes)
    held_out = features_of(model, x_val, spec_input) if len(x_val) else train_features
    threshold = float(np.percentile(scores(held_out, means, precision), VALIDATION_PERCENTILE))
    return OodParameters(means.astype(np.float32), precision.astype(np.float32), threshold)


class ProbabilitiesAndDistance(nn.Module):
    """What the exported graph computes: softmax probabilities and the distance score."""

    means: torch.Tensor
    precision: torch.Tensor

    def __init__(self, model: SECNN, ood: OodParameters) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("means", torch.from_numpy(ood.means))
        self.register_buffer("precision", torch.from_numpy(ood.precision))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = pooled_features(self.model, x)
        logits: torch.Tensor = self.model.head[3](features)  # dropout is off in eval
        diff = features[:, None, :] - self.means[None, :, :]
        projected = torch.matmul(diff, self.precision)
        squared = (projected * diff).sum(dim=2).min(dim=1).values
        return torch.softmax(logits, dim=1), torch.sqrt(torch.clamp(squared, min=0.0))
