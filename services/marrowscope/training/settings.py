"""Training service settings (env prefix ``MARROWSCOPE_TRAINING_``)."""

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from marrowscope.core.settings import DEFAULT_PORTS, GrpcServerSettings, settings_config


class TrainingSettings(GrpcServerSettings):
    model_config = settings_config("MARROWSCOPE_TRAINING_")
    port: int = DEFAULT_PORTS["training"]
    # local: a subprocess per job; kubernetes: a Kubernetes Job per job (KubeJobSettings)
    runner: Literal["local", "kubernetes"] = "local"
    job_log_dir: Path = Path(".marrowscope/logs/jobs")
    # Jobs queued or running at once; StartTraining beyond it answers RESOURCE_EXHAUSTED (the
    # orchestrator retries a round's training later with the same request id).
    max_concurrent_jobs: int = Field(default=1, ge=1)
    # What one job may ask for (memory and time grow with each): StartTraining beyond a limit
    # answers INVALID_ARGUMENT naming the setting that raises it. The defaults allow the
    # paper's recipe (250 epochs, width 32, batch 32, 96 px) with room to spare.
    max_epochs: int = Field(default=500, ge=1)
    max_batch_size: int = Field(default=512, ge=2)
    max_width: int = Field(default=64, ge=1)
    max_input_size: int = Field(default=512, ge=32)
    torch_threads: int = 0  # 0 = all cores
    model_width: int = 32  # channels of the first stage (the paper-like default)
    # The taxonomy of the LIS differential: only a model of exactly these classes may become
    # production (the LIS API's taxonomy).
    clinical_taxonomy: str = "paper17"
    # The promotion gate: how much worse than production a candidate may be on the locked
    # evaluation set (accuracy, macro-F1, any one class's recall; calibration error up).
    gate_max_accuracy_drop: float = 0.01
    gate_max_macro_f1_drop: float = 0.01
    gate_max_recall_drop: float = 0.05
    gate_max_ece_increase: float = 0.02


class KubeJobSettings(BaseSettings):
    """Training Jobs on Kubernetes (env prefix ``MARROWSCOPE_TRAINING_KUBE_``; set by the chart)."""

    model_config = settings_config("MARROWSCOPE_TRAINING_KUBE_")
    namespace: str = ""  # default: the service's own namespace
    image: str = ""
    image_pull_policy: str = "IfNotPresent"
    gpus: int = 0
    cpu: str = "2"
    memory: str = "8Gi"
    backoff_limit: int = 1
    active_deadline_s: int = 6 * 3600
    ttl_after_finished_s: int = 3600
    service_account: str = ""
    # Where the pod gets its database / object-store settings and credentials.
    env_from_secrets: list[str] = []
    env_from_configmaps: list[str] = []
    # Single variables from Secrets whose key names are not env names: {"ENV": "secret:key"}.
    secret_env: dict[str, str] = {}
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    # Secrets to pull the image from a private registry (the chart passes its own).
    image_pull_secrets: list[str] = []
    # The Job pods' security context (the chart passes its podSecurityContext: on OpenShift
    # without a fixed UID).
    pod_security_context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    extra_labels: dict[str, str] = {}
    api_host: str = ""  # empty: in-cluster service account, else ~/.kube/config
    poll_s: float = 5.0
