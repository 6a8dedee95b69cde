"""Curation service settings (env prefix ``MARROWSCOPE_CURATION_``)."""

from pydantic import Field, SecretStr

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
    # Web sessions end at the latest this long after sign-in (a long shift), and earlier
    # after this long without a request (a workstation left signed in).
    session_absolute_seconds: int = Field(default=12 * 3600, ge=1)
    session_idle_seconds: int = Field(default=3600, ge=1)
    # The interactive API docs (/docs, /redoc, /openapi.json): off in production, where they
    # only widen what a browser can be pointed at.
    api_docs: bool = False
    # The origin browsers use when a proxy does not pass the Host header on, e.g.
    # "https://curation.lab.example"; state-changing requests from other origins get 403.
    public_origin: str = ""
    default_lease_seconds: int = 600
    max_claim: int = 200
