"""The paper's augmentation in plain torch (no torchvision): random rotation 0-360 degrees,
horizontal and vertical flips, shifts of up to 12.5 % in both directions. Areas that come in
from outside the image are filled with black (the crops' background)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_batch(
    x: torch.Tensor, black: torch.Tensor, generator: torch.Generator, shift: float = 0.125
) -> torch.Tensor:
    """``x``: N x C x H x W normalised images; ``black``: C values of black after normalising."""
    n = x.shape[0]
    angle = torch.rand(n, generator=generator) * 2 * math.pi
    flip_x = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    flip_y = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    tx = (torch.rand(n, generator=generator) * 2 - 1) * shift * 2  # grid units span 2
    ty = (torch.rand(n, generator=generator) * 2 - 1) * shift * 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * flip_x, -sin * flip_y, tx], dim=1),
            torch.stack([sin * flip_x, cos * flip_y, ty], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(
        torch.ones_like(x[:, :1]), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return moved + (1 - inside) * black.view(1, -1, 1, 1)
