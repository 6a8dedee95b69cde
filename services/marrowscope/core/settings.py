"""Settings shared by every service. Each service adds one class with its own env prefix.

Settings objects are built once in a service's ``__main__`` and passed down; nothing reads the
environment later and nothing mutates them (they are frozen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Default local ports (documented in the README). Peers find each other through
# <SERVICE>_ADDR environment variables, set by the local runner or the Helm chart.
DEFAULT_PORTS = {
    "segmentation": 50051,
    "inference": 50052,
    "training": 50053,
    "curation": 50054,
    "orchestrator": 50055,
    "lis_api": 8080,
    "curation_http": 8081,  # the curation service's HTTP API and web UI
}
GRPC_SERVICES = ("segmentation", "inference", "training", "curation", "orchestrator")


def settings_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="forbid", frozen=True)


class DatabaseSettings(BaseSettings):
    """PostgreSQL. ``MARROWSCOPE_DB_DSN`` (a libpq DSN or URI)."""

    model_config = settings_config("MARROWSCOPE_DB_")
    dsn: str = "postgresql://postgres@127.0.0.1:5432/marrowscope"
    pool_min_size: int = 1
    pool_max_size: int = 8
    apply_migrations: bool = True


class ObjectStoreSettings(BaseSettings):
    """Object store: ``fs`` (a folder, the embedded default) or ``s3`` (MinIO or any S3)."""

    model_config = settings_config("MARROWSCOPE_STORE_")
    backend: Literal["fs", "s3"] = "fs"
    root: Path = Path(".marrowscope/store")
    endpoint: str = ""  # host:port for s3
    access_key: str = ""
    secret_key: str = ""
    bucket: str = "marrowscope"
    secure: bool = False
    region: str = "us-east-1"
    max_object_bytes: int = 64 * 1024 * 1024


class PeerSettings(BaseSettings):
    """Addresses of the other services (``SEGMENTATION_ADDR`` ... ``ORCHESTRATOR_ADDR``)."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)
    segmentation_addr: str = f"127.0.0.1:{DEFAULT_PORTS['segmentation']}"
    inference_addr: str = f"127.0.0.1:{DEFAULT_PORTS['inference']}"
    training_addr: str = f"127.0.0.1:{DEFAULT_PORTS['training']}"
    curation_addr: str = f"127.0.0.1:{DEFAULT_PORTS['curation']}"
    orchestrator_addr: str = f"127.0.0.1:{DEFAULT_PORTS['orchestrator']}"
    # Every call gets this deadline unless the caller sets a tighter one.
    default_deadline_s: float = Field(default=10.0, alias="GRPC_DEFAULT_DEADLINE_S")
    # TLS between services: the CA that signed the services' certificates (PEM). Empty =
    # plaintext (loopback, or a cluster whose network is trusted / meshed).
    tls_ca_file: Path | None = Field(default=None, alias="GRPC_TLS_CA_FILE")

    def tls_ca(self) -> bytes | None:
        return self.tls_ca_file.read_bytes() if self.tls_ca_file else None


class GrpcServerSettings(BaseSettings):
    """Where a gRPC service listens. Each service subclasses this with its own prefix."""

    model_config = settings_config("MARROWSCOPE_GRPC_")
    host: str = "127.0.0.1"
    port: int = 0
    grace_seconds: float = 5.0
    max_message_bytes: int = 16 * 1024 * 1024
    # Serve TLS when both are set (PEM files, e.g. mounted from a Kubernetes Secret).
    tls_cert_file: Path | None = Field(default=None, alias="GRPC_TLS_CERT_FILE")
    tls_key_file: Path | None = Field(default=None, alias="GRPC_TLS_KEY_FILE")
