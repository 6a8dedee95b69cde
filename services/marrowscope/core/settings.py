"""Settings shared by every service. Each service adds one class with its own env prefix.

Settings objects are built once in a service's ``__main__`` and passed down; nothing reads the
environment later and nothing mutates them (they are frozen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .pki import TlsMaterial

# Default local ports (documented in docs/operations.md). Peers find each other through
# <SERVICE>_ADDR environment variables, set by the local runner or the Helm chart.
DEFAULT_PORTS = {
    "segmentation": 50051,
    "inference": 50052,
    "training": 50053,
    "curation": 50054,
    "orchestrator": 50055,
    "lis_api": 8080,
    "curation_http": 8081,  # the curation service's HTTP API and web UI
    # Prometheus /metrics of the gRPC services (the LIS API and curation's HTTP port serve it
    # too, on their own ports).
    "segmentation_metrics": 9151,
    "inference_metrics": 9152,
    "training_metrics": 9153,
    "curation_metrics": 9154,
    "orchestrator_metrics": 9155,
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
    # Every statement on a pooled connection is cancelled after this long (0 = no limit), so
    # one runaway query cannot hold a connection (and its locks) for ever. Migrations run on
    # their own connection without it.
    statement_timeout_s: float = Field(default=30.0, ge=0)
    # How long a request waits for a pooled connection (while the server is down, the whole
    # of it: the pool keeps reconnecting), and a new connection for the server.
    pool_timeout_s: float = Field(default=3.0, gt=0)
    connect_timeout_s: int = Field(default=3, ge=1)


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
    # S3 over HTTP: an endpoint that accepts connections but never answers fails a call in
    # about (retries + 1) x read_timeout_s instead of the client's default minutes.
    connect_timeout_s: float = Field(default=3.0, gt=0)
    # Between bytes of a response (and until its first byte), not for the whole transfer.
    read_timeout_s: float = Field(default=15.0, gt=0)
    retries: int = Field(default=2, ge=0)
    # S3 calls run on the store's own thread pool of this size (also its connection pool).
    max_concurrent_requests: int = Field(default=16, ge=1)


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
    # Mutual TLS between services: the CA that signed every service's certificate, and this
    # process's own certificate and key, which it presents to its peers (PEM files, e.g.
    # mounted from a Kubernetes Secret; ``marrowscope up`` makes a local CA).
    tls_ca_file: Path | None = Field(default=None, alias="GRPC_TLS_CA_FILE")
    tls_cert_file: Path | None = Field(default=None, alias="GRPC_TLS_CERT_FILE")
    tls_key_file: Path | None = Field(default=None, alias="GRPC_TLS_KEY_FILE")
    allow_plaintext: bool = Field(default=False, alias="GRPC_ALLOW_PLAINTEXT")

    def tls(self) -> TlsMaterial | None:
        """The TLS material for calls to peers; None (plaintext) only when none is configured
        and GRPC_ALLOW_PLAINTEXT is set. Half a configuration, or none without that, raises."""
        given = [self.tls_ca_file, self.tls_cert_file, self.tls_key_file]
        if not any(given):
            if self.allow_plaintext:
                return None
            raise ValueError(
                "calls to peers need mutual TLS: set GRPC_TLS_CA_FILE, GRPC_TLS_CERT_FILE and "
                "GRPC_TLS_KEY_FILE (marrowscope up and the Helm chart do), or "
                "GRPC_ALLOW_PLAINTEXT=true on a development machine"
            )
        if not all(given):
            raise ValueError(
                "mutual TLS to peers needs all of GRPC_TLS_CA_FILE, GRPC_TLS_CERT_FILE and "
                "GRPC_TLS_KEY_FILE (this process's certificate is its identity)"
            )
        assert self.tls_ca_file is not None  # for mypy: checked above
        return TlsMaterial.from_files(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)


class GrpcServerSettings(BaseSettings):
    """Where a gRPC service listens. Each service subclasses this with its own prefix."""

    model_config = settings_config("MARROWSCOPE_GRPC_")
    host: str = "127.0.0.1"
    port: int = 0
    grace_seconds: float = 5.0
    max_message_bytes: int = 16 * 1024 * 1024
    # Mutual TLS (PEM files): this service's certificate and key, and the CA its callers'
    # certificates must chain to. Without them the service refuses to start unless
    # GRPC_ALLOW_PLAINTEXT is set: a development machine, or a mesh that does mTLS itself.
    tls_cert_file: Path | None = Field(default=None, alias="GRPC_TLS_CERT_FILE")
    tls_key_file: Path | None = Field(default=None, alias="GRPC_TLS_KEY_FILE")
    tls_ca_file: Path | None = Field(default=None, alias="GRPC_TLS_CA_FILE")
    allow_plaintext: bool = Field(default=False, alias="GRPC_ALLOW_PLAINTEXT")
    # Server reflection lets grpcurl list the methods; off unless asked for.
    reflection: bool = Field(default=False, alias="GRPC_REFLECTION")
    # Prometheus metrics over HTTP on this port (/metrics); 0 = not served. A service with an
    # HTTP API (curation) serves them there as well.
    metrics_port: int = Field(default=0, ge=0, le=65535)

    def tls(self) -> TlsMaterial | None:
        """This server's TLS material, or None for plaintext; raises when half configured."""
        given = [self.tls_cert_file, self.tls_key_file, self.tls_ca_file]
        if not any(given):
            return None
        if not all(given):
            raise ValueError(
                "mutual TLS needs all of GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE and "
                "GRPC_TLS_CA_FILE (the CA that signed the callers' certificates)"
            )
        assert self.tls_ca_file is not None  # for mypy: checked above
        return TlsMaterial.from_files(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
