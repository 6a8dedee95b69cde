"""Segmentation service settings (env prefix ``MARROWSCOPE_SEGMENTATION_``)."""

from typing import Literal

from marrowscope.core.settings import DEFAULT_PORTS, GrpcServerSettings, settings_config


class SegmentationSettings(GrpcServerSettings):
    model_config = settings_config("MARROWSCOPE_SEGMENTATION_")
    port: int = DEFAULT_PORTS["segmentation"]
    min_nucleus_area: int = 60  # px; smaller stained blobs are platelets or debris
    max_field_pixels: int = 40_000_000
    # An exported field U-Net (`marrowscope train-segmenter`), as a file path or as a key in the
    # object store (for Kubernetes: upload it with any S3 client); when set, it is offered
    # beside the stain algorithm, and `default_algorithm` says which one a request without a
    # name gets.
    unet_model: str = ""
    unet_model_key: str = ""
    # stain-v4 (scale-aware, corrects illumination and colour, judges each field) is the
    # default; "stain" is an older name for it; stain-v3 reproduces cells cut before it.
    default_algorithm: Literal["stain-v4", "stain", "stain-v3", "unet"] = "stain-v4"
    max_cell_diameter_red_cells: float = 3.0  # field QC: a larger region is not a cell
    onnx_threads: int = 1
    prefer_cuda: bool = True  # the U-Net on the GPU where the CUDA provider loads
