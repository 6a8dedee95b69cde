"""Segmentation service settings (env prefix ``MARROWSCOPE_SEGMENTATION_``)."""

from pydantic_settings import SettingsConfigDict

from marrowscope.core.settings import DEFAULT_PORTS, GrpcServerSettings, settings_config


class SegmentationSettings(GrpcServerSettings):
    model_config: SettingsConfigDict = settings_config("MARROWSCOPE_SEGMENTATION_")
    port: int = DEFAULT_PORTS["segmentation"]
    min_nucleus_area: int = 60  # px; smaller stained blobs are platelets or debris
    max_field_pixels: int = 40_000_000
