"""Curation service settings (env prefix ``MARROWSCOPE_CURATION_``)."""

from pydantic import SecretStr

from marrowscope.core.settings import DEFAULT_PORTS, GrpcServerSettings, settings_config


class CurationSettings(GrpcServerSettings):
    model_config = settings_config("MARROWSCOPE_CURATION_")
    port: int = DEFAULT_PORTS["curation"]
    # Bootstrap credentials: the first admin, and the token other services use. Only their
    # hashes are stored; rotate by restarting with new values.
    admin_token: SecretStr = SecretStr("")
    service_token: SecretStr = SecretStr("")
    # The HTTP API and the experts' web UI (same host as gRPC).
    http_port: int = DEFAULT_PORTS["curation_http"]
    secure_cookies: bool = False  # true behind HTTPS (the session cookie is then Secure)
    default_lease_seconds: int = 600
    max_claim: int = 200
