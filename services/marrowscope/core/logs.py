"""Logging with a request id on every line (propagated over gRPC as ``x-request-id``).

Text by default; ``MARROWSCOPE_LOG_FORMAT=json`` (the chart's choice) writes one JSON object
per line with the service, its version and the request id, for a cluster's log pipeline.
Nothing here adds patient data: messages name ids, never accession numbers or patients.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
import uuid
from importlib import metadata
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

REQUEST_ID_HEADER = "x-request-id"
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class LogSettings(BaseSettings):
    """``MARROWSCOPE_LOG_FORMAT`` (text | json) and ``MARROWSCOPE_LOG_LEVEL``."""

    model_config = SettingsConfigDict(env_prefix="MARROWSCOPE_LOG_", extra="forbid", frozen=True)
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def package_version() -> str:
    try:
        return metadata.version("marrowscope")
    except metadata.PackageNotFoundError:
        return "unknown"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, service, version, request id, logger,
    message (and the exception's traceback when there is one)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service, self.version = service, package_version()

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "version": self.version,
            "request_id": getattr(record, "request_id", "-"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, settings: LogSettings | None = None) -> LogSettings:
    """Route every logger (uvicorn's too) through one handler on stderr, in the configured
    format; returns the settings used."""
    settings = settings or LogSettings()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if settings.format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s %(levelname)s {service} [%(request_id)s] %(name)s: %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    logging.captureWarnings(True)  # Python warnings as log records, in the same format
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn installs its own handlers; let its records reach ours instead.
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    return settings
