"""docker/k8s: the kustomization builds (kubectl's own kustomize), every built-in object
validates against the Kubernetes schemas (kubernetes-validate, offline), the KEDA objects
against KEDA's documented fields (`keda_schema`; kubernetes-validate has no CRDs), and the
Deployment keeps the worker's promises (shutdown grace, probes on the worker's real routes,
metrics port)."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from sealq.worker.settings import WorkerSettings
from tests.unit.deploy_helpers import K8S, ROOT, shutdown_bound_s, worker_routes
from tests.unit.keda_schema import AWS_SQS_METADATA, SCALED_OBJECT, TRIGGER_AUTHENTICATION

KUBERNETES_VERSION = "1.30"
"""Schemas checked against: the oldest Kubernetes release EKS still supports in standard support."""


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@cache
def built() -> list[dict[str, Any]]:
    """`kubectl kustomize docker/k8s`, parsed (kubectl ships kustomize; no cluster needed)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not on PATH: it renders the kustomization (it ships kustomize)")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(kind: str) -> dict[str, Any]:
    found = [d for d in built() if d["kind"] == kind]
    assert len(found) == 1, [d["kind"] for d in built()]
    return found[0]


def test_the_kustomization_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(manifests)


def test_what_users_edit_is_in_the_kustomization_only() -> None:
    """Queue URLs, keyset and handler are the ConfigMap's literals; the manifests carry
    no account, queue or role of their own."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    literals = {
        line.split("=", 1)[0]
        for generator in kustomization["configMapGenerator"]
        for line in generator["literals"]
    }
    assert {"SEALQ_QUEUE_URL", "SEALQ_DLQ_URL", "SEALQ_KEYSET", "SEALQ_HANDLER"} <= literals
    for path in K8S.glob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert not re.search(r"\d{12}|arn:aws|sqs\.", path.read_text()), path.name


def test_the_build_fills_every_placeholder_and_drops_the_local_config() -> None:
    text = yaml.safe_dump_all(built())
    assert "set-by-kustomization" not in text
    assert {d["kind"] for d in built()} == {
        "ServiceAccount", "ConfigMap", "Deployment", "ScaledObject", "TriggerAuthentication", "PodMonitor"
    }  # fmt: skip
    trigger = one("ScaledObject")["spec"]["triggers"][0]["metadata"]
    config = one("ConfigMap")["data"]
    assert trigger["queueURL"] == config["SEALQ_QUEUE_URL"]
    assert trigger["awsRegion"] == config["AWS_REGION"]
    role = one("ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.startswith("arn:aws:iam::")


@pytest.mark.parametrize("kind", ["ServiceAccount", "ConfigMap", "Deployment"])
def test_built_in_objects_validate_against_the_kubernetes_schemas(kind: str) -> None:
    kubernetes_validate.validate(one(kind), KUBERNETES_VERSION, strict=True)


def test_the_schema_check_is_live() -> None:
    """A misspelt field fails strict validation: the check above can fail."""
    broken = yaml.safe_load(yaml.safe_dump(one("Deployment")))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_keda_objects_have_only_kedas_documented_fields() -> None:
    jsonschema.validate(one("ScaledObject"), SCALED_OBJECT)
    jsonschema.validate(one("TriggerAuthentication"), TRIGGER_AUTHENTICATION)
    broken = yaml.safe_load(yaml.safe_dump(one("ScaledObject")))
    broken["spec"]["maxReplicas"] = broken["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT)


def test_the_hpa_behavior_keda_passes_on_is_a_valid_kubernetes_one() -> None:
    """KEDA copies `advanced.horizontalPodAutoscalerConfig.behavior` into the HPA it makes:
    validate it as part of one."""
    behavior = one("ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keda-hpa-sealq-worker"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sealq-worker"},
            "minReplicas": 1,
            "maxReplicas": 20,
            "behavior": behavior,
        },
    }
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)


def test_the_scaled_object_targets_the_deployment_with_the_sqs_scaler_and_pod_identity() -> None:
    spec = one("ScaledObject")["spec"]
    assert spec["scaleTargetRef"]["name"] == one("Deployment")["metadata"]["name"]
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert set(trigger["metadata"]) <= AWS_SQS_METADATA
    assert all(isinstance(v, str) for v in trigger["metadata"].values())  # KEDA metadata is strings
    assert int(trigger["metadata"]["queueLength"]) > 0
    auth = one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["podIdentity"]["provider"] == "aws"  # KEDA >= 2.13; aws-eks is gone


def test_queue_length_is_the_arithmetic_its_comment_shows() -> None:
    """queueLength = per-process rate x drain time, as written above it, so the two cannot
    drift apart; ECS's BacklogPerTask uses the same figure."""
    text = (K8S / "scaledobject.yaml").read_text()
    rate, drain, product = re.search(
        r"queueLength = per-process rate x target drain time = ([\d,]+) msg/s x (\d+) s = ([\d,]+)", text
    ).groups()  # type: ignore[union-attr]
    as_int = [int(v.replace(",", "")) for v in (rate, drain, product)]
    assert as_int[0] * as_int[1] == as_int[2]
    assert one("ScaledObject")["spec"]["triggers"][0]["metadata"]["queueLength"] == str(as_int[2])
    ecs = (ROOT / "docker" / "ecs" / "worker.yaml").read_text()
    assert re.search(rf"BacklogPerTask:\n(?:.*\n)*?    Default: {as_int[2]}\n", ecs)


def _container() -> dict[str, Any]:
    [container] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _effective_env() -> dict[str, str]:
    env = dict(one("ConfigMap")["data"])
    env.update({e["name"]: e["value"] for e in _container()["env"]})
    return env


def test_termination_grace_outlasts_the_workers_own_shutdown() -> None:
    spec = one("Deployment")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > shutdown_bound_s(_effective_env())


def test_the_container_is_locked_down_and_bounded() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    container = _container()
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and security["runAsNonRoot"]
    assert pod["securityContext"]["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]


def test_probes_and_metrics_port_are_the_workers_own() -> None:
    container = _container()
    env = _effective_env()
    [port] = container["ports"]
    assert port["containerPort"] == int(env["SEALQ_METRICS_PORT"])
    assert env["SEALQ_METRICS_HOST"] == "0.0.0.0"
    routes = worker_routes()
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"]) == (path, port["name"])
        assert path in routes
    endpoint = one("PodMonitor")["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], "/metrics")
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert one("PodMonitor")["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_every_setting_the_manifests_set_is_a_worker_setting() -> None:
    fields = {f"SEALQ_{name.upper()}" for name in WorkerSettings.model_fields}
    for name in _effective_env():
        if name.startswith("SEALQ_"):
            assert name in fields, name
