"""KEDA's ScaledObject and TriggerAuthentication (keda.sh/v1alpha1) as JSON Schema, for
tests/unit/test_deploy_k8s.py.

Written by hand from KEDA's reference (keda.sh/docs/latest/reference/scaledobject-spec/,
.../concepts/authentication/, .../authentication-providers/aws/, .../scalers/aws-sqs/):
kubernetes-validate bundles only built-in kinds, and the one PyPI package of KEDA's CRD
models (cloudcoil-models-keda) ignores unknown fields and installs a pytest plugin that
breaks this suite's start. Unknown fields are refused here (additionalProperties), so a
misspelt field fails instead of being silently ignored by the cluster.
"""

from __future__ import annotations

from typing import Any

AWS_SQS_METADATA = {
    "queueURL", "queueURLFromEnv", "queueLength", "activationQueueLength", "awsRegion",
    "awsEndpoint", "scaleOnInFlight", "scaleOnDelayed", "identityOwner",
}  # fmt: skip
"""The aws-sqs-queue scaler's trigger metadata (values are strings)."""

_META: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
_INT = {"type": "integer", "minimum": 0}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": False}


_TRIGGER = _obj(
    ["type", "metadata"],
    type={"type": "string"},
    name={"type": "string"},
    metadata={"type": "object", "additionalProperties": {"type": "string"}},
    useCachedMetrics={"type": "boolean"},
    metricType={"enum": ["AverageValue", "Value", "Utilization"]},
    authenticationRef=_obj(
        ["name"],
        name={"type": "string"},
        kind={"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
    ),
)

SCALED_OBJECT: dict[str, Any] = _obj(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "keda.sh/v1alpha1"},
    kind={"const": "ScaledObject"},
    metadata=_META,
    spec=_obj(
        ["scaleTargetRef", "triggers"],
        scaleTargetRef=_obj(
            ["name"],
            name={"type": "string"},
            apiVersion={"type": "string"},
            kind={"type": "string"},
            envSourceContainerName={"type": "string"},
        ),
        pollingInterval=_INT,
        cooldownPeriod=_INT,
        initialCooldownPeriod=_INT,
        idleReplicaCount=_INT,
        minReplicaCount=_INT,
        maxReplicaCount=_INT,
        fallback=_obj(
            ["failureThreshold", "replicas"],
            failureThreshold=_INT,
            replicas=_INT,
            behavior={
                "enum": ["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"]
            },
        ),
        advanced=_obj(
            [],
            restoreToOriginalReplicaCount={"type": "boolean"},
            # `behavior` is Kubernetes' HPA behavior: the test validates it with kubernetes-validate.
            horizontalPodAutoscalerConfig=_obj([], name={"type": "string"}, behavior={"type": "object"}),
            scalingModifiers=_obj(
                [],
                formula={"type": "string"},
                target={"type": "string"},
                activationTarget={"type": "string"},
                metricType={"enum": ["AverageValue", "Value"]},
            ),
        ),
        triggers={"type": "array", "minItems": 1, "items": _TRIGGER},
    ),
)

TRIGGER_AUTHENTICATION: dict[str, Any] = _obj(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "keda.sh/v1alpha1"},
    kind={"const": "TriggerAuthentication"},
    metadata=_META,
    spec=_obj(
        [],
        podIdentity=_obj(
            ["provider"],
            provider={"enum": ["none", "aws", "azure-workload", "gcp"]},
            roleArn={"type": "string", "pattern": "^arn:aws[a-z-]*:iam::[0-9]{12}:role/"},
            identityOwner={"enum": ["keda", "workload"]},
            identityId={"type": "string"},
            identityTenantId={"type": "string"},
            identityAuthorityHost={"type": "string"},
        ),
    ),
)
