"""LIS API settings (env prefix ``MARROWSCOPE_LIS_``)."""

import secrets

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from marrowscope.core.settings import DEFAULT_PORTS, settings_config


class LisApiSettings(BaseSettings):
    model_config = settings_config("MARROWSCOPE_LIS_")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORTS["lis_api"]
    # sha256 hex digests of bootstrap API keys (every scope); more clients via /v1/admin/clients.
    api_key_hashes: list[str] = []
    # Signs OAuth2 access tokens. Unset: random per process (tokens die with a restart and
    # are not shared between replicas: set it in a cluster).
    jwt_secret: SecretStr = SecretStr(secrets.token_urlsafe(32))
    token_ttl_s: int = 900
    rate_limit_per_s: float = 50.0
    rate_limit_burst: int = 100
    max_upload_bytes: int = 32 * 1024 * 1024
    max_field_pixels: int = 40_000_000
    max_files_per_request: int = 20
    # The curation service's 'service' token: low-confidence cells then go to the experts'
    # queues as review tasks, and their labels come back as report versions. Empty: review
    # only through this API's /review endpoint.
    curation_token: SecretStr = SecretStr("")
    segmentation_deadline_s: float = 30.0
    inference_deadline_s: float = 30.0
    # Report flags
    blast_high_pct: float = 20.0
    blast_elevated_pct: float = 10.0
    target_cells: int = 500
    minimum_cells: int = 200
    low_confidence_probability: float = 0.5
    low_confidence_margin: float = 0.1
    # Quality control before counting: cells with these segmentation flags are not counted;
    # a field with one region above this share of its area, or with fewer red cells than
    # this, is not analysable (none of its cells counted).
    qc_exclude_flags: list[str] = ["touches_border", "too_large"]
    qc_max_region_share: float = 0.25
    qc_min_red_cells: int = 1
    # More of a specimen's cells than this share beyond the model's distance threshold: the
    # report says "model not validated for these images" (MODEL_NOT_VALIDATED).
    ood_max_share_outside: float = 0.5
