"""LIS API settings (env prefix ``MARROWSCOPE_LIS_``)."""

from pydantic_settings import BaseSettings

from marrowscope.core.settings import DEFAULT_PORTS, settings_config


class LisApiSettings(BaseSettings):
    model_config = settings_config("MARROWSCOPE_LIS_")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORTS["lis_api"]
    # sha256 hex digests of the accepted API keys (the keys themselves are never stored).
    api_key_hashes: list[str] = []
    max_upload_bytes: int = 32 * 1024 * 1024
    max_field_pixels: int = 40_000_000
    segmentation_deadline_s: float = 30.0
    inference_deadline_s: float = 30.0
