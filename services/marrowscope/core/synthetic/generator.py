"""Deterministic synthetic data: single-cell crops and smear fields for the 17 classes.

Used as the demo's default data and as test fixtures. It is not a substitute for real images:
benchmarks report their figures on ../shared/data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..preprocess import CANVAS
from ..taxonomy import DEFAULT_TAXONOMY, load_taxonomy
from .morphology import MORPHOLOGY
from .render import (
    FIELD_BACKGROUND,
    Stain,
    apply_stain,
    composite,
    render_cell,
    render_platelet,
    render_red_cell,
)


@dataclass(frozen=True)
class SyntheticCell:
    class_code: str
    index: int
    rgb: np.ndarray  # CANVAS x CANVAS x 3 uint8, cell centred on black (the paper's crop)


@dataclass(frozen=True)
class FieldCell:
    class_code: str
    box: tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class SyntheticField:
    index: int
    rgb: np.ndarray  # H x W x 3 uint8
    cells: list[FieldCell]  # nucleated cells (and artifacts), the ground truth
    red_cells: int
    platelets: int


def _rng(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, *parts])


def synthetic_classes(taxonomy: str = DEFAULT_TAXONOMY) -> list[str]:
    codes = load_taxonomy(taxonomy).codes
    missing = [c for c in codes if c not in MORPHOLOGY]
    if missing:
        raise ValueError(f"no synthetic morphology for {missing}")
    return codes


def make_cell(code: str, index: int, seed: int = 0) -> SyntheticCell:
    """Cell ``index`` of class ``code``: the same arguments always give the same pixels."""
    class_index = list(MORPHOLOGY).index(code)
    rng = _rng(seed, 1, class_index, index)
    rgb, alpha = render_cell(code, rng)
    canvas = np.zeros((CANVAS, CANVAS, 3))
    shift = rng.integers(-6, 7, 2)
    composite(canvas, rgb, alpha, CANVAS // 2 + int(shift[0]), CANVAS // 2 + int(shift[1]))
    stain = Stain.sample(rng)
    image = apply_stain(canvas, stain, rng)
    # Keep the background truly black, as the paper's crops are.
    image[canvas.max(axis=2) < 1e-3] = 0
    return SyntheticCell(code, index, image)


def iter_cells(
    per_class: int, seed: int = 0, taxonomy: str = DEFAULT_TAXONOMY, start: int = 0
) -> Iterator[SyntheticCell]:
    """``per_class`` cells of every class, class by class."""
    for code in synthetic_classes(taxonomy):
        for index in range(start, start + per_class):
            yield make_cell(code, index, seed)


def make_field(
    index: int,
    seed: int = 0,
    size: tuple[int, int] = (704, 704),
    n_cells: tuple[int, int] = (3, 7),
    classes: list[str] | None = None,
) -> SyntheticField:
    """A smear field: red cells, platelets and a few nucleated cells that rarely overlap."""
    rng = _rng(seed, 2, index)
    height, width = size
    classes = classes or [c for c in synthetic_classes() if c != "ART"]
    canvas = np.ones((height, width, 3)) * (FIELD_BACKGROUND + rng.normal(0, 0.01, 3))
    n_rbc = int(rng.integers(25, 45) * height * width / 704**2)
    for _ in range(n_rbc):
        patch, alpha = render_red_cell(rng)
        composite(canvas, patch, alpha, int(rng.integers(0, height)), int(rng.integers(0, width)))
    n_plt = int(rng.integers(3, 10))
    for _ in range(n_plt):
        patch, alpha = render_platelet(rng)
        composite(canvas, patch, alpha, int(rng.integers(0, height)), int(rng.integers(0, width)))

    cells: list[FieldCell] = []
    placed: list[tuple[int, int, float]] = []
    for _ in range(int(rng.integers(n_cells[0], n_cells[1] + 1))):
        code = classes[int(rng.integers(0, len(classes)))]
        patch, alpha = render_cell(code, rng)
        ys, xs = np.nonzero(alpha > 0.5)
        reach = float(max(ys.max() - ys.min(), xs.max() - xs.min())) / 2
        margin = int(reach) + 4
        for _attempt in range(40):
            cy = int(rng.integers(margin, height - margin))
            cx = int(rng.integers(margin, width - margin))
            if all(np.hypot(cy - py, cx - px) > reach + pr + 6 for py, px, pr in placed):
                break
        else:
            continue
        composite(canvas, patch, alpha, cy, cx)
        placed.append((cy, cx, reach))
        top, left = cy - alpha.shape[0] // 2, cx - alpha.shape[1] // 2
        box = (
            int(left + xs.min()),
            int(top + ys.min()),
            int(xs.max() - xs.min() + 1),
            int(ys.max() - ys.min() + 1),
        )
        cells.append(FieldCell(code, box))
    image = apply_stain(canvas, Stain.sample(rng), rng)
    return SyntheticField(index, image, cells, n_rbc, n_plt)
