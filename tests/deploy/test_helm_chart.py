"""The Helm chart, rendered by the Helm engine (helm-python-sdk) for the value sets lab IT
uses, linted strictly, validated against the Kubernetes schemas, and checked for the
properties the chart promises (probes, non-root, resources, GPU requests, no plain secrets)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "marrowscope"
KUBE_VERSION = "1.30.0"
GRPC_COMPONENTS = {"segmentation", "inference", "training", "curation", "orchestrator"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-db-and-s3": {
        "postgresql": {"enabled": False},
        "externalDatabase": {"existingSecret": "lab-db", "dsnKey": "uri"},
        "minio": {"enabled": False},
        "externalObjectStore": {"endpoint": "s3.lab.example:443", "existingSecret": "lab-s3"},
        "auth": {"existingSecret": "lab-auth"},
        "tls": {"existingSecretPrefix": "lab-mtls-"},
        "global": {"imagePullSecrets": [{"name": "lab-registry"}]},
    },
    "gpu-inference": {
        "inference": {
            "gpu": {"enabled": True, "count": 1, "nodeSelector": {"nvidia.com/gpu.present": "true"}}
        },
        "training": {"job": {"gpu": {"enabled": True}}},
    },
    "tls-own-secrets": {"tls": {"existingSecretPrefix": "lab-mtls-"}},
    "tls-off-in-a-mesh": {"tls": {"enabled": False}},
    "gitops-openshift-extras": {
        "global": {
            "gitOps": True,
            "extraEnv": [
                {"name": "HTTPS_PROXY", "valueFrom": {"secretKeyRef": {"name": "p", "key": "u"}}}
            ],
            "extraVolumes": [{"name": "lab-ca", "configMap": {"name": "lab-ca"}}],
            "extraVolumeMounts": [{"name": "lab-ca", "mountPath": "/etc/lab-ca"}],
            "podAnnotations": {"lab.example/owner": "hematology-it"},
            "priorityClassName": "lab-critical",
            "aParentChartsOwnKey": "fine",
        },
        "serviceAccount": {"annotations": {"iam.example/role": "marrowscope"}},
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
        "postgresql": {"enabled": False},
        "externalDatabase": {"existingSecret": "lab-db"},
        "minio": {"enabled": False},
        "externalObjectStore": {"endpoint": "s3.lab.example:443", "existingSecret": "lab-s3"},
        "auth": {"existingSecret": "lab-auth"},
        "tls": {"existingSecretPrefix": "lab-mtls-"},
    },
    "monitoring-on": {
        "metrics": {
            "podMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        }
    },
    "inference-3-replicas-metrics-restricted": {
        "inference": {"replicas": 3, "autoscaling": {"enabled": False}},
        "metrics": {"allowFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
    },
    "api-only": {
        **{
            k: {"enabled": False}
            for k in ("segmentation", "inference", "training", "curation", "orchestrator")
        },
        "lisApi": {"ingress": {"enabled": True, "host": "ms.lab.example", "tlsSecret": "ms-tls"}},
    },
}


def render(
    values: dict[str, Any], chart_dir: Path = CHART, is_install: bool = True
) -> list[dict[str, Any]]:
    chart = helm.Chart.load(chart_dir)
    chart.validate_schema(values)
    manifests = chart.render(values, name="lab", namespace="marrowscope", is_install=is_install)
    docs = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUE_SETS[request.param])


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    ]
    return found + [
        (f"CronJob/{d['metadata']['name']}", d["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] == "CronJob"
    ]


def test_lint_strict_passes_for_every_value_set() -> None:
    for name, values in VALUE_SETS.items():
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, f"{name}: {problems}"


def test_manifests_validate_against_kubernetes_schemas(rendered) -> None:  # type: ignore[no-untyped-def]
    name, docs = rendered
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # the Prometheus Operator's CRDs: no schema here (checked below)
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_every_container_is_non_root_read_only_and_bounded(rendered) -> None:  # type: ignore[no-untyped-def]
    name, docs = rendered
    for where, spec in pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert container["resources"]["requests"], f"{where}: no resource requests"
            assert "memory" in container["resources"]["limits"], f"{where}: no memory limit"


def test_probes_native_grpc_or_http_and_tls_switches_to_exec(rendered) -> None:  # type: ignore[no-untyped-def]
    name, docs = rendered
    tls = name != "tls-off-in-a-mesh"  # mutual TLS is the default
    for deployment in of_kind(docs, "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            spec = container[probe]
            if component(deployment) == "lis-api":
                assert spec["httpGet"]["path"] in ("/readyz", "/healthz")
            elif tls:
                assert spec["exec"]["command"][:3] == [
                    "python",
                    "-m",
                    "marrowscope.core.healthcheck",
                ]
            else:
                assert spec["grpc"]["port"] == container["ports"][0]["containerPort"]
        env = {e["name"] for e in container["env"]}
        assert ("GRPC_TLS_CA_FILE" in env) == tls
        assert ("GRPC_TLS_CERT_FILE" in env) == tls  # the LIS API too: it calls as lis-api
        assert ("GRPC_ALLOW_PLAINTEXT" in env) == (not tls)
        if tls:
            secret = next(
                v["secret"]["secretName"]
                for v in deployment["spec"]["template"]["spec"]["volumes"]
                if v["name"] == "tls"
            )
            own = name in ("tls-own-secrets", "external-db-and-s3", "gitops-openshift-extras")
            prefix = "lab-mtls-" if own else "lab-marrowscope-tls-"
            assert secret == prefix + component(deployment)


def test_generated_identities_are_signed_by_the_ca_with_the_component_names() -> None:
    """The default install generates a CA and one certificate per identity, whose common
    name is the identity the services' allow-list checks and whose DNS names are the
    component's Service (the probes and peers connect by that name)."""
    import base64

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from marrowscope.core.pki import IDENTITIES

    secrets = {
        d["metadata"]["name"]: d["data"]
        for d in of_kind(render({}), "Secret")
        if d["type"] == "kubernetes.io/tls"
    }
    ca = x509.load_pem_x509_certificate(
        base64.b64decode(secrets["lab-marrowscope-tls-ca"]["tls.crt"])
    )
    for identity in IDENTITIES:
        data = secrets[f"lab-marrowscope-tls-{identity}"]
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
        assert base64.b64decode(data["ca.crt"]) == ca.public_bytes(serialization_pem())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == identity
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {identity, f"lab-marrowscope-{identity}"} <= set(
            names.get_values_for_type(x509.DNSName)
        )
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.CLIENT_AUTH in usage and ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert not [
        d
        for d in of_kind(render(VALUE_SETS["tls-own-secrets"]), "Secret")
        if d["type"] == "kubernetes.io/tls"
    ]


def serialization_pem():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM


def test_no_plaintext_secret_outside_secrets(rendered) -> None:  # type: ignore[no-untyped-def]
    name, docs = rendered
    secret_values = set()
    for secret in of_kind(docs, "Secret"):
        secret_values |= {str(v) for v in secret.get("stringData", {}).values()}
        secret_values |= {base64.b64decode(v).decode() for v in secret.get("data", {}).values()}
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(doc)
        leaked = [v for v in secret_values if len(v) >= 8 and v in text]
        assert not leaked, f"{doc['kind']}/{doc['metadata']['name']} contains a secret value"
        for _, spec in pod_specs([doc]):
            for container in spec["containers"]:
                for env in container.get("env", []):
                    if any(w in env["name"] for w in ("PASSWORD", "SECRET_KEY", "TOKEN", "DSN")):
                        assert "valueFrom" in env, f"{env['name']} is set in plain text"
    if name in ("external-db-and-s3", "gitops-openshift-extras"):
        assert not of_kind(docs, "Secret"), "external installs use the lab's own Secrets"


def test_gpu_requests_only_where_asked(rendered) -> None:  # type: ignore[no-untyped-def]
    name, docs = rendered
    for deployment in of_kind(docs, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        limits = spec["containers"][0]["resources"].get("limits", {})
        wants_gpu = name == "gpu-inference" and component(deployment) == "inference"
        assert ("nvidia.com/gpu" in limits) == wants_gpu, deployment["metadata"]["name"]
        if wants_gpu:
            assert limits["nvidia.com/gpu"] == "1"
            assert spec["containers"][0]["image"].endswith("/marrowscope-gpu:0.1.0")
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
            assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    training = [d for d in of_kind(docs, "Deployment") if component(d) == "training"]
    for deployment in training:
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["MARROWSCOPE_TRAINING_RUNNER"] == "kubernetes"
        assert env["MARROWSCOPE_TRAINING_KUBE_GPUS"] == ("1" if name == "gpu-inference" else "0")


def test_notes_give_the_gpu_check_only_for_gpu_inference() -> None:
    for name, values in VALUE_SETS.items():
        manifests = helm.Chart.load(CHART).render(
            values, name="lab", namespace="ms", is_install=True
        )
        notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
        command = "kubectl -n ms exec deploy/lab-marrowscope-inference -- marrowscope gpu-check"
        assert (command in notes) == (name == "gpu-inference"), name


def test_components_follow_the_enabled_flags(rendered) -> None:  # type: ignore[no-untyped-def]
    name, docs = rendered
    deployed = {component(d) for d in of_kind(docs, "Deployment")}
    if name == "api-only":
        assert deployed == {"lis-api"}
        assert of_kind(docs, "Ingress")
        assert not of_kind(docs, "HorizontalPodAutoscaler") and not of_kind(docs, "Role")
    else:
        assert deployed == GRPC_COMPONENTS | {"lis-api"}
        autoscaled = name != "inference-3-replicas-metrics-restricted"
        assert bool(of_kind(docs, "HorizontalPodAutoscaler")) == autoscaled
        role = of_kind(docs, "Role")[0]
        assert {"create", "get", "delete"} <= set(role["rules"][0]["verbs"])
    bundled = {component(d) for d in of_kind(docs, "StatefulSet")}
    external = name in ("external-db-and-s3", "gitops-openshift-extras")
    assert bundled == (set() if external else {"postgresql", "minio"})
    # No Helm hook (a post-install hook with --wait deadlocks on pods waiting for the
    # schema): every service pod migrates in an init container, waiting for the database.
    assert not [j for j in of_kind(docs, "Job") if "helm.sh/hook" in j["metadata"]["annotations"]]
    for deployment in of_kind(docs, "Deployment"):
        [init] = deployment["spec"]["template"]["spec"]["initContainers"]
        assert init["command"][:3] == ["python", "-m", "marrowscope.core.migrate"]
        assert "--wait" in init["command"]
        assert init["securityContext"]["readOnlyRootFilesystem"] is True


def test_network_policies_follow_the_call_graph() -> None:
    docs = render({})
    policies = {component(p): p for p in of_kind(docs, "NetworkPolicy")}

    def callers(name: str) -> set[str]:
        rule = policies[name]["spec"]["ingress"][0]
        return {
            peer["podSelector"]["matchLabels"].get("app.kubernetes.io/component", "*")
            for peer in rule.get("from", [])
            if "podSelector" in peer
        }

    assert callers("segmentation") == {"lis-api", "orchestrator"}  # ImportCells' centre crops
    assert callers("inference") == {"lis-api", "orchestrator"}
    assert callers("training") == {"orchestrator", "lis-api"}  # model admin routes
    # the curation admin page, and ML staff's CLI pods by label (orchestrator.allowFrom: "*")
    assert callers("orchestrator") == {"curation", "*"}
    assert "from" not in policies["lis-api"]["spec"]["ingress"][0]  # the LIS: open by default
    assert set(policies) == GRPC_COMPONENTS | {"lis-api", "postgresql", "minio"}


def test_schema_rejects_wrong_types_and_unknown_keys() -> None:
    chart = helm.Chart.load(CHART)
    for bad in (
        {"inference": {"replicas": "two"}},
        {"inference": {"replicaz": 2}},
        {"tls": {"enabled": "yes"}},
        {"lisApi": {"service": {"port": 70000}}},
        {"postgresql": {"password": "hunter2"}},  # no place for a plain-text password
    ):
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(bad)


def test_external_database_without_secret_is_a_clear_error() -> None:
    with pytest.raises(helm.HelmRenderError, match="externalDatabase.existingSecret is required"):
        render({"postgresql": {"enabled": False}})


def test_disruption_budgets_only_where_a_pod_can_be_evicted(rendered) -> None:  # type: ignore[no-untyped-def]
    """A PodDisruptionBudget with minAvailable 1 over a single replica blocks `kubectl drain`
    for ever: none is rendered there (inference autoscaled from 1, by default)."""
    name, docs = rendered
    budgets = {component(d): d for d in of_kind(docs, "PodDisruptionBudget")}
    replicas = {component(d): d["spec"].get("replicas", 1) for d in of_kind(docs, "Deployment")}
    autoscaled = {
        h["spec"]["scaleTargetRef"]["name"].removeprefix("lab-marrowscope-"): h["spec"][
            "minReplicas"
        ]
        for h in of_kind(docs, "HorizontalPodAutoscaler")
    }
    for comp, budget in budgets.items():
        least = autoscaled.get(comp, replicas[comp])
        assert least > budget["spec"]["minAvailable"], f"{name}: {comp} cannot be drained"
    if name == "defaults":
        assert "inference" not in budgets and {"segmentation", "curation", "lis-api"} <= set(
            budgets
        )
    if name == "inference-3-replicas-metrics-restricted":
        assert "inference" in budgets


def test_inference_is_reached_through_a_headless_service(rendered) -> None:  # type: ignore[no-untyped-def]
    """Callers resolve every inference pod and balance over them (round robin in the
    channel's service config), so replicas the autoscaler adds get traffic."""
    name, docs = rendered
    headless = {
        s["metadata"]["name"] for s in of_kind(docs, "Service") if s["spec"].get("clusterIP")
    }
    if name == "api-only":
        assert not headless
        return
    assert headless == {"lab-marrowscope-inference-pods"}
    [config] = [c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-config")]
    assert config["data"]["INFERENCE_ADDR"] == "lab-marrowscope-inference-pods:50052"


def test_metrics_are_served_annotated_and_reachable_only_on_their_port(rendered) -> None:  # type: ignore[no-untyped-def]
    name, docs = rendered
    for deployment in of_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]
        container = pod["spec"]["containers"][0]
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        env = {e["name"]: e.get("value") for e in container["env"]}
        if component(deployment) == "lis-api":
            assert annotations["prometheus.io/port"] == "8080"
        else:
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports["metrics"] == 9090 and annotations["prometheus.io/port"] == "9090"
            [metrics_port] = [v for k, v in env.items() if k.endswith("_METRICS_PORT")]
            assert metrics_port == "9090"
    for policy in of_kind(docs, "NetworkPolicy"):
        if component(policy) in ("postgresql", "minio"):
            continue
        rules = policy["spec"]["ingress"]
        scrape = [r for r in rules if any(p["port"] in (9090, 8080) for p in r["ports"])]
        assert scrape, policy["metadata"]["name"]
        if name == "inference-3-replicas-metrics-restricted" and component(policy) != "lis-api":
            assert all(r.get("from") for r in scrape)  # (the LIS API's port is its allowFrom's)


def test_training_jobs_pull_from_the_charts_registry(rendered) -> None:  # type: ignore[no-untyped-def]
    """The training service creates Jobs itself: it gets the pull secrets to give them."""
    name, docs = rendered
    [training] = [d for d in of_kind(docs, "Deployment") if component(d) == "training"] or [None]
    if training is None:
        return  # api-only: no training service
    env = {
        e["name"]: e.get("value")
        for e in training["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    expected = ["lab-registry"] if name == "external-db-and-s3" else []
    assert json.loads(env["MARROWSCOPE_TRAINING_KUBE_IMAGE_PULL_SECRETS"]) == expected


def test_gitops_refuses_to_generate_credentials() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"gitOps=true.*auth.existingSecret.*tls"):
        render({"global": {"gitOps": True}})


def test_openshift_values_and_the_extras_reach_every_pod() -> None:
    """The shipped OpenShift values drop the fixed UIDs (from every pod, training Jobs
    included); the global extras land on every service pod."""
    openshift = yaml.safe_load((CHART / "values-openshift.yaml").read_text())
    for values in (openshift, VALUE_SETS["gitops-openshift-extras"]):
        docs = render(values)
        for where, spec in pod_specs(docs):
            if where.startswith("StatefulSet/"):
                continue  # the bundled PostgreSQL / MinIO keep their images' UIDs (see values)
            context = spec["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context), where
        [training] = [d for d in of_kind(docs, "Deployment") if component(d) == "training"]
        env = {
            e["name"]: e.get("value")
            for e in training["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        job_context = json.loads(env["MARROWSCOPE_TRAINING_KUBE_POD_SECURITY_CONTEXT"])
        assert job_context["runAsNonRoot"] is True and "runAsUser" not in job_context
    docs = render(VALUE_SETS["gitops-openshift-extras"])
    for deployment in of_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]
        container = pod["spec"]["containers"][0]
        assert pod["metadata"]["annotations"]["lab.example/owner"] == "hematology-it"
        assert pod["spec"]["priorityClassName"] == "lab-critical"
        assert any(e["name"] == "HTTPS_PROXY" and "valueFrom" in e for e in container["env"])
        assert {"name": "lab-ca", "mountPath": "/etc/lab-ca"} in container["volumeMounts"]
        assert any(v["name"] == "lab-ca" for v in pod["spec"]["volumes"])
    accounts = of_kind(docs, "ServiceAccount")
    assert accounts and all(
        a["metadata"]["annotations"] == {"iam.example/role": "marrowscope"} for a in accounts
    )


# The chart as labs installed it before mutual TLS, the init-container migrations and the
# headless inference Service (main at 2026-11-30 05:45). Move it forward at each release.
PREVIOUS_CHART_COMMIT = "adce026"


def test_an_upgrade_from_the_previous_chart_changes_no_immutable_field(tmp_path: Path) -> None:
    """`helm upgrade` from the previous chart: what Kubernetes will not change in place
    (Deployment and StatefulSet selectors, a StatefulSet's volume claims and service name, a
    Service's clusterIP and type) is the same, and every Secret the old chart generated is
    still rendered by name (so the lookup keeps its values)."""
    import io
    import subprocess
    import tarfile

    root = CHART.parents[1]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", PREVIOUS_CHART_COMMIT, "helm/marrowscope"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    old = {(d["kind"], d["metadata"]["name"]): d for d in render({}, tmp_path / "helm/marrowscope")}
    new = {(d["kind"], d["metadata"]["name"]): d for d in render({}, is_install=False)}
    for key in sorted(set(old) & set(new)):
        before, after = old[key].get("spec", {}), new[key].get("spec", {})
        kind, _ = key
        if kind in ("Deployment", "StatefulSet"):
            assert before["selector"] == after["selector"], key
        if kind == "StatefulSet":
            assert before.get("serviceName") == after.get("serviceName"), key
            claims = [(c["metadata"]["name"], c["spec"]) for c in before["volumeClaimTemplates"]]
            assert claims == [
                (c["metadata"]["name"], c["spec"]) for c in after["volumeClaimTemplates"]
            ], key
        if kind == "Service":
            assert before.get("clusterIP") == after.get("clusterIP"), key
            assert before.get("type") == after.get("type"), key
    generated = {name for kind, name in old if kind == "Secret"}
    assert generated and generated <= {name for kind, name in new if kind == "Secret"}
    # What the old chart had and this one dropped: the migrations hook Job, and the budget over
    # the single inference pod (it blocked drains).
    dropped = set(old) - set(new)
    assert dropped == {
        ("Job", "lab-marrowscope-migrations-1"),
        ("PodDisruptionBudget", "lab-marrowscope-inference"),
    }


def test_monitoring_for_the_prometheus_operator_and_grafana(rendered) -> None:  # type: ignore[no-untyped-def]
    name, docs = rendered
    monitors, rules = of_kind(docs, "PodMonitor"), of_kind(docs, "PrometheusRule")
    dashboards = [
        c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("dashboard")
    ]
    if name != "monitoring-on":
        assert not monitors and not rules and not dashboards
        return
    [monitor] = monitors
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"metrics", "http"}
    [rule] = rules
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert {
        "MarrowscopeAnalysisJobStuck",
        "MarrowscopeInferenceSlow",
        "MarrowscopePeerUnavailable",
        "MarrowscopeAuditChainBroken",
    } <= set(alerts)
    # The rules use metrics the services export (names checked against core.metrics).
    from marrowscope.core import metrics

    exported = {
        "marrowscope_analysis_job_oldest_seconds",
        "marrowscope_round_oldest_seconds",
        metrics.GRPC_SERVER_SECONDS._name,
        metrics.GRPC_CLIENT_CALLS._name,
    }
    for alert in alerts.values():
        used = set(re.findall(r"(marrowscope_[a-z_]+?)(?:_bucket|_total)?\{", alert["expr"]))
        assert used <= {m.removesuffix("_total") for m in exported}, (alert["alert"], used)
    [dashboard] = dashboards
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["marrowscope.json"])["panels"]
    assert len(panels) >= 5


def test_the_audit_chain_is_verified_on_a_schedule(rendered) -> None:  # type: ignore[no-untyped-def]
    name, docs = rendered
    [cron] = of_kind(docs, "CronJob")
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-2:] == ["audit", "verify"]
    assert (
        container["env"][0]["name"] == "MARROWSCOPE_DB_DSN" and "valueFrom" in container["env"][0]
    )
