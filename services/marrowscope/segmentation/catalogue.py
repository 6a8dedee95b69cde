"""The segmentation algorithms a service offers, from its settings.

The default is the field U-Net that ships with the package (``models/``, see its model card),
run on the prepared field at the canonical scale (:mod:`.canonical`); a lab's own U-Net
(``unet_model`` / ``unet_model_key``) replaces it. ``stain-v4`` (no weights, scale-aware) and
``stain-v3`` (the algorithm before, to reproduce earlier cells) are offered by name.
"""

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
SHIPPED_UNET = Path(__file__).parent / "models" / "field-unet-txl-val-s0.onnx"


def stain_v4(
    policy: FieldQcPolicy | None = None, center_cells: StainSegmenter | None = None
) -> ScaleAwareSegmenter:
    """stain-v3's steps on the prepared field (:mod:`.canonical`), with every length in
    red-cell diameters instead of fractions of the image. Chosen on TXL-PBC val
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


def canonical_unet(
    onnx_bytes: bytes,
    threads: int = 1,
    prefer_cuda: bool = False,
    policy: FieldQcPolicy | None = None,
    center_cells: StainSegmenter | None = None,
) -> ScaleAwareSegmenter:
    """A field U-Net on the prepared field at the canonical scale (28 px per red cell, about
    the red-cell size the U-Net sees in training), fully convolutional, so a wide frame is
    read at the same scale as a small one. Only cells with a core of their own are cells (a
    body without one was the main false positive on val), and the stain is not normalised
    (flat field and white balance only: on val, precision 0.948 instead of 0.921 at the same
    recall). Its version is the U-Net's: ``unet-<sha of the weights>-c2``. Centre-cell mode
    stays stain-v3's."""
    unet = UNetSegmenter(
        onnx_bytes,
        threads=threads,
        prefer_cuda=prefer_cuda,
        whole_field=False,
        min_body_fraction=1.0,  # never: chosen on TXL-PBC val with the test-trained model
    )
    log.info("segmentation U-Net %s on %s", unet.version, unet.provider)
    return ScaleAwareSegmenter(
        unet,
        unet.version,
        policy,
        center_cells=center_cells or StainSegmenter(),
        normalise_stain_colours=False,
    )


def shipped_unet_bytes() -> bytes:
    try:
        return SHIPPED_UNET.read_bytes()
    except OSError as error:
        raise FailedPrecondition(
            f"the shipped segmentation model {SHIPPED_UNET} is missing ({error.strerror}); "
            "reinstall the package, set MARROWSCOPE_SEGMENTATION_UNET_MODEL, or set "
            "MARROWSCOPE_SEGMENTATION_DEFAULT_ALGORITHM=stain-v4"
        ) from error


def load_unet(path: str | Path, threads: int = 1, prefer_cuda: bool = False) -> UNetSegmenter:
    """An exported field U-Net from a file (whole-field mode), with an error that says what
    to do."""
    return UNetSegmenter(read_model(path), threads=threads, prefer_cuda=prefer_cuda)


def read_model(path: str | Path) -> bytes:
    """An exported model's bytes, or FailedPrecondition saying what to do."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise FailedPrecondition(
            f"cannot read the segmentation model {path}: {error.strerror}; train one with "
            "`marrowscope train-segmenter` or unset MARROWSCOPE_SEGMENTATION_UNET_MODEL"
        ) from error


def default_algorithms() -> dict[str, SegmentationAlgorithm]:
    """What a service offers with default settings, the default first: the shipped U-Net,
    stain-v4, stain-v3."""
    return algorithms_from_settings(SegmentationSettings())


def algorithms_from_settings(
    settings: SegmentationSettings, store: ObjectStore | None = None
) -> dict[str, SegmentationAlgorithm]:
    """By version, the default first (the service answers requests without a name with it)."""
    policy = FieldQcPolicy(max_cell_diameter=settings.max_cell_diameter_red_cells)
    previous = StainSegmenter(min_nucleus_area=settings.min_nucleus_area)
    newest = stain_v4(policy, previous)
    if settings.unet_model and settings.unet_model_key:
        raise FailedPrecondition("set unet_model (a file) or unet_model_key (the store), not both")
    if settings.unet_model:
        weights = read_model(settings.unet_model)
    elif settings.unet_model_key:
        if store is None:
            raise FailedPrecondition("unet_model_key names an object, but no object store is set")
        try:
            weights = store.get(settings.unet_model_key)
        except NotFound as error:
            raise FailedPrecondition(
                f"segmentation model {settings.unet_model_key} is not in the object store; "
                "upload the file `marrowscope train-segmenter` wrote, or unset "
                "MARROWSCOPE_SEGMENTATION_UNET_MODEL_KEY"
            ) from error
    else:
        weights = shipped_unet_bytes()
    unet = canonical_unet(weights, settings.onnx_threads, settings.prefer_cuda, policy, previous)
    order: dict[str, list[SegmentationAlgorithm]] = {
        "unet": [unet, newest, previous],
        "stain-v4": [newest, previous, unet],
        "stain": [previous, newest, unet],  # the old name: it meant stain-v3
        "stain-v3": [previous, newest, unet],
    }
    return {algorithm.version: algorithm for algorithm in order[settings.default_algorithm]}
