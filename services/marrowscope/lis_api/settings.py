"""LIS API settings (env prefix ``MARROWSCOPE_LIS_``)."""

import re
import secrets

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from marrowscope.core.settings import DEFAULT_PORTS, settings_config

# An HS256 key must be at least as long as the hash's output (RFC 7518, section 3.2).
MIN_JWT_SECRET_BYTES = 32


class LisApiSettings(BaseSettings):
    """The LIS API's settings; the environment names are ``MARROWSCOPE_LIS_`` + the field's
    name in capitals (``MARROWSCOPE_LIS_JWT_SECRET``)."""

    model_config = settings_config("MARROWSCOPE_LIS_")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORTS["lis_api"]
    # sha256 hex digests of bootstrap API keys (every scope); more clients via /v1/admin/clients.
    api_key_hashes: list[str] = []
    # Signs OAuth2 access tokens. Unset: random per process (tokens die with a restart and
    # are not shared between replicas: set it in a cluster). At least 32 bytes.
    jwt_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(48)))
    token_ttl_s: int = Field(default=900, ge=1)
    rate_limit_per_s: float = 50.0
    rate_limit_burst: int = 100
    max_upload_bytes: int = 32 * 1024 * 1024
    # Request bodies: a multipart upload may carry max_files_per_request images of
    # max_upload_bytes each (plus this much for the multipart framing); every other request
    # at most max_body_bytes. Larger is refused with 413 before the body is read (by its
    # Content-Length, or while it streams in when it has none).
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    multipart_overhead_bytes: int = Field(default=1024 * 1024, ge=0)
    max_field_pixels: int = 40_000_000
    # Pixels decoded at once across all requests (each pixel costs about 3-6 bytes while it
    # is decoded): bounds the API's memory under many concurrent uploads of large fields.
    decode_pixel_budget: int = Field(default=60_000_000, ge=1_000_000)
    max_files_per_request: int = 20
    # The interactive API docs (/docs, /redoc): off unless asked for. /openapi.json, the
    # published contract, is always served.
    docs_enabled: bool = False
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

    @field_validator("api_key_hashes")
    @classmethod
    def _digests(cls, value: list[str]) -> list[str]:
        for digest in value:
            if not re.fullmatch(r"[0-9a-fA-F]{64}", digest.strip()):
                raise ValueError(
                    "MARROWSCOPE_LIS_API_KEY_HASHES lists sha256 hex digests of the keys (64 hex "
                    "digits each), never the keys: python3 -c 'import hashlib,sys; "
                    "print(hashlib.sha256(sys.argv[1].encode()).hexdigest())' KEY"
                )
        return [d.strip().lower() for d in value]

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret_long_enough(cls, value: SecretStr) -> SecretStr:
        size = len(value.get_secret_value().encode())
        if size < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"MARROWSCOPE_LIS_JWT_SECRET is {size} bytes; it signs access tokens and must "
                f"be at least {MIN_JWT_SECRET_BYTES} bytes: generate one with "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return value

    @property
    def max_upload_request_bytes(self) -> int:
        """The largest multipart upload request: every file at its limit, plus framing."""
        return self.max_files_per_request * self.max_upload_bytes + self.multipart_overhead_bytes
