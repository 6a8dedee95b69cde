"""Segmentation service settings (env prefix ``MARROWSCOPE_SEGMENTATION_``)."""

from typing import Literal

from marrowscope.core.settings import DEFAULT_PORTS, GrpcServerSettings, settings_config


class SegmentationSettings(GrpcServerSettings):
    model_config = settings_config("MARROWSCOPE_SEGMENTATION_")
    port: int = DEFAULT_PORTS["segmentation"]
    min_nucleus_area: int = 60  # px; smaller stained blobs are platelets or debris
    max_field_pixels: int = 40_000_000
    # The default is the field U-Net shipped with the package, run at the canonical scale
    # (docs/segmentation.md). A lab's own U-Net (`marrowscope train-segmenter`) replaces it, as
    # a file path or as a key in the object store (for Kubernetes: upload it with any S3
    # client). `default_algorithm` says what a request without a name gets: the U-Net,
    # stain-v4 (no weights, scale-aware) or stain-v3 (the algorithm before, to reproduce cells
    # cut with it; "stain", its older name, still means it).
    unet_model: str = ""
    unet_model_key: str = ""
    default_algorithm: Literal["unet", "stain-v4", "stain", "stain-v3"] = "unet"
    max_cell_diameter_red_cells: float = 3.0  # field QC: a larger region is not a cell
    onnx_threads: int = 1
    prefer_cuda: bool = True  # the U-Net on the GPU where the CUDA provider loads
