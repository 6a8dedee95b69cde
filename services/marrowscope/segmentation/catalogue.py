"""The segmentation algorithms a service offers, from its settings."""

from __future__ import annotations

import logging
from pathlib import Path

from marrowscope.core.errors import FailedPrecondition, NotFound
from marrowscope.core.objectstore import ObjectStore

from .algorithm import SegmentationAlgorithm
from .learned import UNetSegmenter
from .settings import SegmentationSettings
from .stain import StainSegmenter

log = logging.getLogger(__name__)


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


def algorithms_from_settings(
    settings: SegmentationSettings, store: ObjectStore | None = None
) -> dict[str, SegmentationAlgorithm]:
    """By version, the default first (the service answers requests without a name with it)."""
    stain = StainSegmenter(min_nucleus_area=settings.min_nucleus_area)
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
        return {stain.version: stain}
    log.info("segmentation U-Net %s on %s", unet.version, unet.provider)
    ordered: list[SegmentationAlgorithm] = (
        [unet, stain] if settings.default_algorithm == "unet" else [stain, unet]
    )
    return {algorithm.version: algorithm for algorithm in ordered}
