"""The segmentation algorithms a service offers, from its settings."""

from __future__ import annotations

import logging
from pathlib import Path

from marrowscope.core.errors import FailedPrecondition, NotFound
from marrowscope.core.objectstore import ObjectStore

from .algorithm import SegmentationAlgorithm
from .canonical import CANONICAL_RED_CELL_PX, ScaleAwareSegmenter
from .field_qc import FieldQcPolicy
from .illumination import BACKGROUND_LEVEL
from .learned import UNetSegmenter
from .settings import SegmentationSettings
from .stain import StainSegmenter

log = logging.getLogger(__name__)
STAIN_V4 = "stain-v4"


def stain_v4(
    policy: FieldQcPolicy | None = None, center_cells: StainSegmenter | None = None
) -> ScaleAwareSegmenter:
    """The default: stain-v3's steps on the prepared field (:mod:`.canonical`), with every
    length in red-cell diameters instead of fractions of the image. Chosen on TXL-PBC val
    (``bench/segmentation.py``): closing radius 0.10 red cells at 28 px per red cell.
    Centre-cell mode stays stain-v3's (``center_cells``): single-cell images come from one
    instrument at one magnification, and the classifier's crops were measured with it."""
    red_cell = CANONICAL_RED_CELL_PX
    inner = StainSegmenter(
        working_side=0,  # the field is already at the canonical scale
        close_radius=0.10 * red_cell,
        min_nucleus_area=int(0.15 * red_cell**2),  # platelets are smaller
        min_area_fraction=0.0,
        max_nucleus_area=4.9 * red_cell**2,  # a nucleus 2.5 red cells across
        known_background=(BACKGROUND_LEVEL,) * 3,
    )
    return ScaleAwareSegmenter(
        inner, STAIN_V4, policy, center_cells=center_cells or StainSegmenter()
    )


def load_unet(path: str | Path, threads: int = 1, prefer_cuda: bool = False) -> UNetSegmenter:
    """An exported field U-Net from a file, with an error that says what to do."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise FailedPrecondition(
            f"cannot read the segmentation model {path}: {error.strerror}; train one with "
            "`marrowscope train-segmenter` or unset MARROWSCOPE_SEGMENTATION_UNET_MODEL"
        ) from error
    return UNetSegmenter(data, threads=threads, prefer_cuda=prefer_cuda)


def default_algorithms() -> dict[str, SegmentationAlgorithm]:
    """What a service offers without a U-Net: stain-v4 (the default), and stain-v3 so cells
    segmented before stain-v4 can be reproduced."""
    newest, previous = stain_v4(), StainSegmenter()
    return {newest.version: newest, previous.version: previous}


def algorithms_from_settings(
    settings: SegmentationSettings, store: ObjectStore | None = None
) -> dict[str, SegmentationAlgorithm]:
    """By version, the default first (the service answers requests without a name with it)."""
    previous = StainSegmenter(min_nucleus_area=settings.min_nucleus_area)
    newest = stain_v4(
        FieldQcPolicy(max_cell_diameter=settings.max_cell_diameter_red_cells), previous
    )
    stains: list[SegmentationAlgorithm] = [newest, previous]
    if settings.default_algorithm == "stain-v3":
        stains.reverse()
    if settings.unet_model and settings.unet_model_key:
        raise FailedPrecondition("set unet_model (a file) or unet_model_key (the store), not both")
    if settings.unet_model:
        unet = load_unet(settings.unet_model, settings.onnx_threads, settings.prefer_cuda)
    elif settings.unet_model_key:
        if store is None:
            raise FailedPrecondition("unet_model_key names an object, but no object store is set")
        try:
            data = store.get(settings.unet_model_key)
        except NotFound as error:
            raise FailedPrecondition(
                f"segmentation model {settings.unet_model_key} is not in the object store; "
                "upload the file `marrowscope train-segmenter` wrote, or unset "
                "MARROWSCOPE_SEGMENTATION_UNET_MODEL_KEY"
            ) from error
        unet = UNetSegmenter(data, threads=settings.onnx_threads, prefer_cuda=settings.prefer_cuda)
    else:
        if settings.default_algorithm == "unet":
            raise FailedPrecondition("default_algorithm is unet but no U-Net model is set")
        return {algorithm.version: algorithm for algorithm in stains}
    log.info("segmentation U-Net %s on %s", unet.version, unet.provider)
    ordered = [unet, *stains] if settings.default_algorithm == "unet" else [*stains, unet]
    return {algorithm.version: algorithm for algorithm in ordered}
