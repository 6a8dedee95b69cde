"""Class-dependent morphology of synthetic bone marrow cells (the paper's 17 classes).

Each class is a set of parameter ranges; neighbouring classes overlap on purpose (the
myelocyte -> metamyelocyte -> band -> segmented continuum of nuclear indentation; erythroid
stages by size, chromatin density and cytoplasm colour) so that a classifier cannot reach
100 % trivially. Sizes are in pixels at the paper's crop scale (282x282 canvas).
"""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]
RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Morphology:
    radius: Range  # cell radius
    nucleus_ratio: Range  # nucleus equivalent radius / cell radius (N:C)
    indentation: Range = (0.0, 0.05)  # 0 round ... 1 thin horseshoe
    lobes: tuple[int, int] = (1, 1)
    eccentricity: Range = (0.0, 0.1)  # nucleus offset / cell radius
    chromatin: Range = (0.4, 0.6)  # 0 fine and pale ... 1 dense and dark
    cytoplasm: RGB = (0.75, 0.75, 0.85)
    cytoplasm_jitter: float = 0.05
    granules: Range = (0.0, 0.0)  # granules per 100 px^2 of cytoplasm
    granule_colour: RGB = (0.55, 0.3, 0.5)
    granule_size: Range = (1.0, 1.6)
    granules_over_nucleus: bool = False
    nucleoli: tuple[int, int] = (0, 0)
    vacuoles: tuple[int, int] = (0, 0)
    halo: bool = False
    kind: str = "cell"  # cell | mitosis | bare_nucleus | artifact


NEUTROPHIL_CYTOPLASM = (0.9, 0.8, 0.8)

MORPHOLOGY: dict[str, Morphology] = {
    "PEB_BEB": Morphology(
        (56, 76),
        (0.70, 0.82),
        chromatin=(0.25, 0.45),
        cytoplasm=(0.3, 0.38, 0.75),
        nucleoli=(0, 2),
    ),
    "PCEB": Morphology(
        (40, 56),
        (0.60, 0.74),
        chromatin=(0.55, 0.75),
        cytoplasm=(0.55, 0.55, 0.75),
    ),
    "OEB": Morphology(
        (32, 46),
        (0.42, 0.60),
        chromatin=(0.85, 1.0),
        cytoplasm=(0.78, 0.62, 0.72),
        eccentricity=(0.0, 0.25),
    ),
    "MB": Morphology(
        (52, 72),
        (0.74, 0.88),
        indentation=(0.0, 0.1),
        chromatin=(0.15, 0.35),
        cytoplasm=(0.45, 0.55, 0.85),
        granules=(0.0, 0.05),
        nucleoli=(1, 3),
    ),
    "PMC": Morphology(
        (60, 80),
        (0.52, 0.68),
        eccentricity=(0.1, 0.3),
        chromatin=(0.3, 0.5),
        cytoplasm=(0.6, 0.65, 0.88),
        granules=(1.2, 2.2),
        granule_colour=(0.45, 0.15, 0.4),
        granule_size=(1.2, 2.0),
        granules_over_nucleus=True,
        nucleoli=(0, 1),
    ),
    "MC": Morphology(
        (50, 66),
        (0.50, 0.64),
        indentation=(0.0, 0.28),
        eccentricity=(0.05, 0.25),
        chromatin=(0.45, 0.65),
        cytoplasm=NEUTROPHIL_CYTOPLASM,
        granules=(0.8, 1.4),
        granule_colour=(0.75, 0.55, 0.62),
    ),
    "MMC": Morphology(
        (46, 60),
        (0.48, 0.60),
        indentation=(0.18, 0.52),
        chromatin=(0.55, 0.75),
        cytoplasm=NEUTROPHIL_CYTOPLASM,
        granules=(0.6, 1.2),
        granule_colour=(0.78, 0.6, 0.66),
    ),
    "BAND": Morphology(
        (44, 58),
        (0.45, 0.56),
        indentation=(0.45, 0.82),
        chromatin=(0.65, 0.85),
        cytoplasm=NEUTROPHIL_CYTOPLASM,
        granules=(0.5, 1.0),
        granule_colour=(0.8, 0.62, 0.68),
    ),
    "SEG": Morphology(
        (44, 58),
        (0.42, 0.54),
        indentation=(0.7, 1.0),
        lobes=(2, 5),
        chromatin=(0.7, 0.9),
        cytoplasm=NEUTROPHIL_CYTOPLASM,
        granules=(0.5, 1.0),
        granule_colour=(0.8, 0.62, 0.68),
    ),
    "EO": Morphology(
        (48, 62),
        (0.42, 0.52),
        indentation=(0.75, 0.95),
        lobes=(2, 2),
        chromatin=(0.6, 0.8),
        cytoplasm=(0.92, 0.72, 0.6),
        granules=(2.0, 3.0),
        granule_colour=(0.92, 0.45, 0.25),
        granule_size=(1.8, 2.6),
    ),
    "BA": Morphology(
        (44, 56),
        (0.45, 0.58),
        indentation=(0.2, 0.7),
        chromatin=(0.5, 0.7),
        cytoplasm=(0.75, 0.7, 0.85),
        granules=(1.5, 2.5),
        granule_colour=(0.25, 0.1, 0.35),
        granule_size=(1.8, 2.8),
        granules_over_nucleus=True,
    ),
    "MO": Morphology(
        (60, 80),
        (0.50, 0.66),
        indentation=(0.2, 0.55),
        eccentricity=(0.0, 0.2),
        chromatin=(0.3, 0.5),
        cytoplasm=(0.7, 0.72, 0.86),
        granules=(0.1, 0.4),
        granule_colour=(0.6, 0.45, 0.6),
        vacuoles=(0, 6),
    ),
    "LY": Morphology(
        (30, 44),
        (0.78, 0.92),
        chromatin=(0.75, 0.95),
        cytoplasm=(0.55, 0.65, 0.9),
        eccentricity=(0.0, 0.15),
    ),
    "PC": Morphology(
        (44, 60),
        (0.42, 0.55),
        eccentricity=(0.3, 0.5),
        chromatin=(0.65, 0.85),
        cytoplasm=(0.3, 0.35, 0.7),
        halo=True,
        vacuoles=(0, 3),
    ),
    "MIT": Morphology(
        (50, 70), (0.5, 0.7), chromatin=(0.9, 1.0), cytoplasm=(0.65, 0.7, 0.88), kind="mitosis"
    ),
    "BN": Morphology(
        (28, 48), (1.0, 1.0), indentation=(0.0, 0.3), chromatin=(0.35, 0.6), kind="bare_nucleus"
    ),
    "ART": Morphology((20, 60), (0.3, 0.8), chromatin=(0.2, 0.9), kind="artifact"),
}
