"""Render synthetic cells and smear fields with numpy (deterministic for a given generator)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .morphology import MORPHOLOGY, Morphology

NUCLEUS_BASE = np.array([0.42, 0.22, 0.55])
NUCLEUS_DENSE = np.array([0.2, 0.08, 0.32])
FIELD_BACKGROUND = np.array([0.93, 0.89, 0.88])
RBC_COLOUR = np.array([0.9, 0.58, 0.58])


@dataclass(frozen=True)
class Stain:
    """Per-image stain and scanner variation."""

    gain: np.ndarray  # per-channel multiplier
    offset: float
    blur: float
    noise: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Stain:
        return cls(
            gain=1.0 + rng.normal(0, 0.05, 3),
            offset=float(rng.normal(0, 0.02)),
            blur=float(rng.uniform(0.4, 1.1)),
            noise=float(rng.uniform(0.005, 0.02)),
        )


def _u(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise / (noise.std() + 1e-6)


def _wobbly_disc(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, radius: float, wobble: float
) -> np.ndarray:
    """Signed 'inside' measure of a disc whose radius varies smoothly with angle."""
    angle = np.arctan2(yy, xx)
    r = np.hypot(yy, xx)
    harmonics = sum(
        rng.normal(0, wobble / k) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
        for k in range(2, 6)
    )
    stretch = 1 + rng.normal(0, 0.05) * np.cos(2 * angle)
    return radius * stretch * (1 + harmonics) - r


def _nucleus_mask(
    rng: np.random.Generator,
    yy: np.ndarray,
    xx: np.ndarray,
    size: float,
    indentation: float,
    lobes: int,
) -> np.ndarray:
    """Nucleus as a thick arc: round at indentation 0, a thin horseshoe at 1, pinched into
    lobes when lobes > 1. Returns a boolean mask."""
    rho = size * (0.15 + 0.85 * indentation)
    half_angle = np.pi * (0.08 + 0.77 * indentation)
    width = size * (1.0 - 0.62 * indentation)
    orientation = rng.uniform(0, 2 * np.pi)
    # Arc centre sits behind the nucleus so the arc bulges around the cell centre.
    cy, cx = -rho * np.sin(orientation), -rho * np.cos(orientation)
    theta = np.arctan2(yy - cy, xx - cx) - orientation
    theta = (theta + np.pi) % (2 * np.pi) - np.pi
    clamped = np.clip(theta, -half_angle, half_angle)
    py = cy + rho * np.sin(clamped + orientation)
    px = cx + rho * np.cos(clamped + orientation)
    distance = np.hypot(yy - py, xx - px)
    s = (clamped / half_angle + 1) / 2  # 0..1 along the arc
    if lobes > 1:
        profile = 0.3 + 0.7 * np.abs(np.sin(np.pi * lobes * s)) ** 0.6
    else:
        profile = 1.0 - 0.25 * indentation * np.abs(2 * s - 1) ** 2
    wobble = 1 + 0.06 * _texture(rng, yy.shape, max(2.0, size / 6))
    return distance < width * profile * wobble


def _dots(
    rng: np.random.Generator,
    canvas: np.ndarray,
    where: np.ndarray,
    count: int,
    colour: np.ndarray,
    size: tuple[float, float],
    strength: float = 0.85,
) -> None:
    ys, xs = np.nonzero(where)
    if count <= 0 or len(ys) == 0:
        return
    pick = rng.integers(0, len(ys), count)
    layer = np.zeros(where.shape)
    sigma = _u(rng, size) / 1.5
    np.add.at(layer, (ys[pick], xs[pick]), 1.0)
    layer = ndimage.gaussian_filter(layer, sigma) * (2 * np.pi * sigma**2)
    alpha = np.clip(layer * strength, 0, 1)[..., None]
    canvas[:] = canvas * (1 - alpha) + colour * alpha


def render_cell(code: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One cell of class ``code``: (RGB float HxWx3 in [0,1], alpha HxW in [0,1])."""
    m: Morphology = MORPHOLOGY[code]
    radius = _u(rng, m.radius)
    half = int(np.ceil(radius * 1.3)) + 6
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    shape = yy.shape
    rgb = np.zeros((*shape, 3))

    if m.kind == "artifact":
        return _render_artifact(rng, yy, xx, radius)

    cell_inside = _wobbly_disc(rng, yy, xx, radius, 0.04) > 0
    chromatin = _u(rng, m.chromatin)
    nucleus_size = radius * _u(rng, m.nucleus_ratio)
    offset = radius * _u(rng, m.eccentricity)
    direction = rng.uniform(0, 2 * np.pi)
    ny, nx = yy - offset * np.sin(direction), xx - offset * np.cos(direction)

    cytoplasm = np.clip(np.array(m.cytoplasm) + rng.normal(0, m.cytoplasm_jitter, 3), 0, 1)
    rgb[:] = cytoplasm * (1 - 0.06 * _texture(rng, shape, 3.0)[..., None])

    if m.kind == "mitosis":
        nucleus = _chromosomes(rng, yy, xx, nucleus_size)
    elif m.kind == "bare_nucleus":
        nucleus = _wobbly_disc(rng, yy, xx, radius * 0.9, 0.08) > 0
        cell_inside = nucleus
    else:
        lobes = int(rng.integers(m.lobes[0], m.lobes[1] + 1))
        nucleus = _nucleus_mask(rng, ny, nx, nucleus_size, _u(rng, m.indentation), lobes)
        nucleus &= cell_inside

    if m.halo:
        halo = ndimage.binary_dilation(nucleus, iterations=max(2, int(radius / 10))) & ~nucleus
        halo = ndimage.gaussian_filter(halo.astype(float), 2.0)[..., None]
        rgb[:] = rgb * (1 - 0.6 * halo) + np.array([0.85, 0.85, 0.95]) * 0.6 * halo

    cytoplasm_area = cell_inside & ~nucleus
    n_vac = int(rng.integers(m.vacuoles[0], m.vacuoles[1] + 1))
    _dots(rng, rgb, cytoplasm_area, n_vac, np.array([0.95, 0.95, 0.98]), (2.5, 4.0), 0.7)

    # Chromatin: darker and coarser texture as the cell matures.
    colour = NUCLEUS_BASE * (1 - chromatin) + NUCLEUS_DENSE * chromatin
    grain = _texture(rng, shape, 1.0 + 2.5 * chromatin)
    shade = np.clip(1 - (0.08 + 0.25 * chromatin) * grain, 0.5, 1.4)[..., None]
    soft_nucleus = ndimage.gaussian_filter(nucleus.astype(float), 0.8)[..., None]
    rgb[:] = rgb * (1 - soft_nucleus) + np.clip(colour * shade, 0, 1) * soft_nucleus
    n_nucleoli = int(rng.integers(m.nucleoli[0], m.nucleoli[1] + 1))
    inner = ndimage.binary_erosion(nucleus, iterations=max(1, int(nucleus_size / 4)))
    _dots(rng, rgb, inner, n_nucleoli, np.array([0.6, 0.55, 0.85]), (2.5, 3.5), 0.8)

    granule_area = cell_inside if m.granules_over_nucleus else cytoplasm_area
    density = _u(rng, m.granules)
    count = int(density * granule_area.sum() / 100)
    _dots(rng, rgb, granule_area, count, np.array(m.granule_colour), m.granule_size)

    alpha = ndimage.gaussian_filter(cell_inside.astype(float), 0.8)
    return np.clip(rgb, 0, 1), alpha


def _chromosomes(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: float
) -> np.ndarray:
    """A mitotic figure: a cluster (or metaphase plate) of short dark rods."""
    mask = np.zeros(yy.shape, bool)
    plate = rng.random() < 0.5
    angle0 = rng.uniform(0, np.pi)
    for _ in range(int(rng.integers(14, 26))):
        if plate:
            t = rng.normal(0, size * 0.45)
            cy, cx = t * np.sin(angle0) + rng.normal(0, 3), t * np.cos(angle0) + rng.normal(0, 3)
        else:
            cy, cx = rng.normal(0, size * 0.35, 2)
        a = rng.uniform(0, np.pi)
        length = rng.uniform(4, 9)
        along = (yy - cy) * np.sin(a) + (xx - cx) * np.cos(a)
        across = -(yy - cy) * np.cos(a) + (xx - cx) * np.sin(a)
        mask |= (np.abs(along) < length) & (np.abs(across) < rng.uniform(1.5, 2.8))
    return mask


def _render_artifact(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Smudges, debris and broken cells: irregular shapes of random stain."""
    shape = yy.shape
    blob = _texture(rng, shape, radius / 4) + 1.5 * (1 - np.hypot(yy, xx) / radius)
    inside = blob > rng.uniform(0.8, 1.6)
    if inside.sum() < 50:
        inside = np.hypot(yy, xx) < radius * 0.5
    colour = np.clip(rng.uniform(0.25, 0.85, 3), 0, 1)
    shade = 1 - 0.2 * _texture(rng, shape, rng.uniform(1, 5))[..., None]
    rgb = np.clip(colour * shade, 0, 1) * np.ones((*shape, 3))
    alpha = ndimage.gaussian_filter(inside.astype(float), rng.uniform(0.8, 2.5))
    return rgb, alpha


def apply_stain(rgb: np.ndarray, stain: Stain, rng: np.random.Generator) -> np.ndarray:
    out = rgb * stain.gain + stain.offset
    out = ndimage.gaussian_filter(out, (stain.blur, stain.blur, 0))
    out = out + rng.normal(0, stain.noise, out.shape)
    return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)


def composite(canvas: np.ndarray, patch: np.ndarray, alpha: np.ndarray, cy: int, cx: int) -> None:
    """Alpha-blend ``patch`` centred at (cy, cx) onto ``canvas`` in place, clipped to it."""
    ph, pw = alpha.shape
    top, left = cy - ph // 2, cx - pw // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + ph, canvas.shape[0]), min(left + pw, canvas.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    a = alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
    region = canvas[y0:y1, x0:x1]
    region[:] = region * (1 - a) + patch[y0 - top : y1 - top, x0 - left : x1 - left] * a


def render_red_cell(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    radius = rng.uniform(26, 36)
    half = int(radius) + 4
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    r = np.hypot(yy, xx) / radius
    colour = np.clip(RBC_COLOUR + rng.normal(0, 0.03, 3), 0, 1)
    pallor = np.clip(1 - r / 0.5, 0, 1)[..., None] * 0.5
    rgb = colour * (1 - pallor) + FIELD_BACKGROUND * pallor
    alpha = ndimage.gaussian_filter((r < 1).astype(float), 1.0)
    return rgb * np.ones((*yy.shape, 3)), alpha


def render_platelet(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    radius = rng.uniform(3, 6)
    half = int(radius) + 3
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    alpha = ndimage.gaussian_filter((np.hypot(yy, xx) < radius).astype(float), 0.8)
    return np.array([0.55, 0.35, 0.65]) * np.ones((*yy.shape, 3)), alpha
