"""Training jobs as Kubernetes Jobs, through the ``kubernetes`` Python client.

The Job's name is derived from the training job's id, so launching the same job twice (a
retried request, a restart between the database insert and the create call) finds the Job
already there (HTTP 409) instead of training twice. The pod runs the same ``job.py`` as a
local subprocess and reports through PostgreSQL; this launcher polls the Job's status to
notice pods that die without reporting (OOM kill, deadline, image pull failure).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .launchers import OnExit
from .settings import KubeJobSettings

log = logging.getLogger(__name__)

JOB_PREFIX = "marrowscope-train-"
_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def job_name(job_id: str) -> str:
    return JOB_PREFIX + job_id  # 18 + 36 characters: inside the 63-character limit


def _label_value(value: str) -> str:
    """Kubernetes label values: <= 63 characters of [A-Za-z0-9._-], alphanumeric at both ends."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in value)[:63]
    return cleaned.strip("._-")


def build_api(settings: KubeJobSettings) -> client.BatchV1Api:
    """In-cluster credentials in a pod; ``api_host`` for a given endpoint; kubeconfig otherwise."""
    if settings.api_host:
        configuration = client.Configuration()
        configuration.host = settings.api_host
        return client.BatchV1Api(client.ApiClient(configuration))
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.BatchV1Api()


class KubernetesJobLauncher:
    def __init__(self, settings: KubeJobSettings, api: client.BatchV1Api | None = None) -> None:
        if not settings.image:
            raise ValueError(
                "MARROWSCOPE_TRAINING_KUBE_IMAGE is required when the training runner is "
                "kubernetes (the Helm chart sets it to the training image)"
            )
        self.settings = settings
        self.api = api or build_api(settings)
        self.namespace = settings.namespace or (
            _NAMESPACE_FILE.read_text().strip() if _NAMESPACE_FILE.exists() else "default"
        )
        self._stop = threading.Event()

    def runner_tag(self, job_id: str) -> str:
        return "k8s:" + job_name(job_id)

    def manifest(self, job_id: str, labels: dict[str, str]) -> dict[str, Any]:
        s = self.settings
        job_labels = {
            "app.kubernetes.io/name": "marrowscope",
            "app.kubernetes.io/component": "training-job",
            "app.kubernetes.io/managed-by": "marrowscope-training",
            "marrowscope.io/training-job": job_id,
            **{f"marrowscope.io/{k}": _label_value(v) for k, v in labels.items() if v},
            **s.extra_labels,
        }
        resources: dict[str, dict[str, str]] = {
            "requests": {"cpu": s.cpu, "memory": s.memory},
            "limits": {"memory": s.memory},
        }
        if s.gpus:
            resources["limits"]["nvidia.com/gpu"] = str(s.gpus)
        env_from = [{"secretRef": {"name": n}} for n in s.env_from_secrets] + [
            {"configMapRef": {"name": n}} for n in s.env_from_configmaps
        ]
        env = [
            {
                "name": var,
                "valueFrom": {
                    "secretKeyRef": dict(zip(("name", "key"), ref.split(":", 1), strict=True))
                },
            }
            for var, ref in sorted(s.secret_env.items())
        ]
        pod_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            # As the chart's pods (a namespace enforcing the restricted Pod Security Standard
            # rejects a pod without the RuntimeDefault seccomp profile).
            "securityContext": dict(s.pod_security_context),
            "containers": [
                {
                    "name": "train",
                    "image": s.image,
                    "imagePullPolicy": s.image_pull_policy,
                    "command": ["python", "-m", "marrowscope.training.job", job_id],
                    "envFrom": env_from,
                    "env": env,
                    "resources": resources,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }
        if s.service_account:
            pod_spec["serviceAccountName"] = s.service_account
        if s.image_pull_secrets:
            pod_spec["imagePullSecrets"] = [{"name": n} for n in s.image_pull_secrets]
        if s.node_selector:
            pod_spec["nodeSelector"] = s.node_selector
        if s.tolerations:
            pod_spec["tolerations"] = s.tolerations
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job_name(job_id), "labels": job_labels},
            "spec": {
                "backoffLimit": s.backoff_limit,
                "activeDeadlineSeconds": s.active_deadline_s,
                "ttlSecondsAfterFinished": s.ttl_after_finished_s,
                "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
            },
        }

    def launch(self, job_id: str, labels: dict[str, str], on_exit: OnExit) -> None:
        name = job_name(job_id)
        try:
            # The client serialises a plain manifest dict as it is (stubs say V1Job only).
            body: Any = self.manifest(job_id, labels)
            self.api.create_namespaced_job(self.namespace, body)
            log.info("created Kubernetes Job %s/%s", self.namespace, name)
        except ApiException as exc:
            if exc.status != 409:
                raise
            log.info(
                "Kubernetes Job %s/%s exists already; not creating it again", self.namespace, name
            )
        self._watch(job_id, on_exit)

    def reattach(self, job_id: str, runner: str, on_exit: OnExit) -> bool:
        if not runner.startswith("k8s:"):
            return False
        state, _ = self.job_state(job_id)
        if state in ("missing", "failed", "complete"):
            return False
        self._watch(job_id, on_exit)
        return True

    def job_state(self, job_id: str) -> tuple[str, str]:
        """('missing' | 'active' | 'complete' | 'failed', detail)."""
        try:
            job = self.api.read_namespaced_job_status(job_name(job_id), self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return "missing", "the Job was deleted before it finished"
            raise
        for condition in (job.status and job.status.conditions) or []:
            if condition.status != "True":
                continue
            if condition.type == "Complete":
                return "complete", ""
            if condition.type == "Failed":
                return "failed", f"{condition.reason or 'Failed'}: {condition.message or ''}"
        return "active", ""

    def _watch(self, job_id: str, on_exit: OnExit) -> None:
        def poll() -> None:
            while not self._stop.wait(self.settings.poll_s):
                try:
                    state, detail = self.job_state(job_id)
                except (ApiException, HTTPError) as exc:  # API server hiccup: keep watching
                    log.warning("cannot read Job %s: %s", job_name(job_id), exc)
                    continue
                if state == "active":
                    continue
                message = (
                    None
                    if state == "complete"
                    else (f"Kubernetes Job {self.namespace}/{job_name(job_id)} {state}: {detail}")
                )
                on_exit(job_id, message)
                return

        threading.Thread(target=poll, name=f"watch-{job_id[:8]}", daemon=True).start()

    def stop(self, job_id: str, runner: str) -> None:
        try:
            self.api.delete_namespaced_job(
                job_name(job_id), self.namespace, propagation_policy="Background"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def shutdown(self) -> None:
        self._stop.set()  # the Jobs themselves keep running in the cluster
