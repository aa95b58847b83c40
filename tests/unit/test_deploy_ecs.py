"""docker/ecs/worker.yaml: cfn-lint (its bundled resource specs, offline) finds nothing; the
container stops later than the worker's own shutdown can take and within Fargate's limit;
scaling tracks backlog per task with AWS's metric math; the task role is docker/iam/worker.json."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import parliament
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import decode_str

from tests.unit.deploy_helpers import DOCKER, IAM, shutdown_bound_s, worker_routes

TEMPLATE = DOCKER / "ecs" / "worker.yaml"
FARGATE_MAX_STOP_TIMEOUT_S = 120
"""ECS ContainerDefinition.stopTimeout: at most 120 s on Fargate (30 s when unset)."""
EXAMPLE = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "111122223333",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "sealq-worker",
    "Image": "sealq:0.1.0",
    "KeysetBucket": "example-sealq-keys",
    "CmkArn": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "ImageRepositoryArn": "arn:aws:ecr:us-east-1:111122223333:repository/sealq",
    "LogGroup.Arn": "arn:aws:logs:us-east-1:111122223333:log-group:/ecs/sealq-worker/sealq-worker",
}
"""Values for the parameters and pseudo parameters, the ones docker/iam/*.json use."""


def _lint(text: str) -> list[str]:
    return [str(m) for m in lint(text, config=ManualArgs(regions=["us-east-1"]))]


def test_cfn_lint_finds_nothing() -> None:
    assert _lint(TEMPLATE.read_text()) == []


def test_cfn_lint_is_live() -> None:
    """A Fargate CPU/memory pair Fargate does not offer is caught: the check above can fail."""
    broken = TEMPLATE.read_text().replace('Cpu: "1024"', 'Cpu: "1000"')
    assert any("E3047" in m for m in _lint(broken))


@cache
def template() -> dict[str, Any]:
    decoded, matches = decode_str(TEMPLATE.read_text())
    assert not matches
    return json.loads(json.dumps(decoded))  # plain dicts


def resolve(node: Any, values: dict[str, str]) -> Any:
    """Ref, Fn::Sub and Fn::GetAtt with example values: enough for these policies and env."""
    if isinstance(node, list):
        return [resolve(n, values) for n in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return _value(node["Ref"], values)
    if set(node) == {"Fn::Sub"}:
        return re.sub(r"\$\{([\w:.]+)\}", lambda m: _value(m[1], values), node["Fn::Sub"])
    if set(node) == {"Fn::GetAtt"}:
        return values[".".join(node["Fn::GetAtt"])]
    return {k: resolve(v, values) for k, v in node.items()}


def _value(name: str, values: dict[str, str]) -> str:
    """The example value, else the parameter's default; a resource's Ref is its logical name."""
    if name in values:
        return values[name]
    parameter = template()["Parameters"].get(name)
    return name if parameter is None else str(parameter["Default"])


def resource(name: str) -> dict[str, Any]:
    return dict(template()["Resources"][name]["Properties"])


def container() -> dict[str, Any]:
    [definition] = resource("TaskDefinition")["ContainerDefinitions"]
    return dict(resolve(definition, EXAMPLE))


def test_the_container_outlasts_the_workers_shutdown_within_fargates_limit() -> None:
    env = {e["Name"]: e["Value"] for e in container()["Environment"]}
    assert shutdown_bound_s(env) < container()["StopTimeout"] <= FARGATE_MAX_STOP_TIMEOUT_S


def test_the_container_is_locked_down_and_checks_its_health_like_the_image() -> None:
    c = container()
    env = {e["Name"]: e["Value"] for e in c["Environment"]}
    assert c["HealthCheck"]["Command"] == ["CMD", "sealq", "health"]  # the Dockerfile's HEALTHCHECK
    assert "/healthz" in worker_routes()  # what `sealq health` asks for
    assert [p["ContainerPort"] for p in c["PortMappings"]] == [int(env["SEALQ_METRICS_PORT"])]
    assert c["ReadonlyRootFilesystem"] is True and c["User"] not in ("0", "root")
    assert c["LinuxParameters"]["Capabilities"]["Drop"] == ["ALL"]
    assert env["SEALQ_QUEUE_URL"] == "https://sqs.us-east-1.amazonaws.com/111122223333/sealq"
    assert env["SEALQ_KEYSET"] == "s3://example-sealq-keys/sealq/keyset.json"


def test_scaling_tracks_visible_messages_per_running_task() -> None:
    target = resource("ScalableTarget")
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert template()["Parameters"]["MinTasks"]["MinValue"] >= 1  # the divisor is never 0
    config = resource("BacklogPerTaskScaling")["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == {"Ref": "BacklogPerTask"}
    queries = {q["Id"]: q for q in config["CustomizedMetricSpecification"]["Metrics"]}
    visible, tasks = queries["visible"]["MetricStat"], queries["tasks"]["MetricStat"]
    assert (visible["Metric"]["Namespace"], visible["Metric"]["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert visible["Metric"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Ref": "QueueName"}}]
    assert (tasks["Metric"]["Namespace"], tasks["Metric"]["MetricName"]) == (
        "ECS/ContainerInsights",
        "RunningTaskCount",
    )
    [returned] = [q for q in queries.values() if q["ReturnData"]]
    assert returned["Expression"].replace(" ", "") == "visible/tasks"
    # RunningTaskCount exists only with Container Insights on the cluster.
    assert {"Name": "containerInsights", "Value": "enabled"} in resource("Cluster")["ClusterSettings"]


def _policy(role: str) -> dict[str, Any]:
    [policy] = resource(role)["Policies"]
    return dict(resolve(policy["PolicyDocument"], EXAMPLE))


def test_the_task_role_is_the_worker_policy() -> None:
    worker = json.loads((IAM / "worker.json").read_text())
    assert _policy("TaskRole") == worker


def test_the_execution_role_pulls_one_repository_and_writes_one_log_group() -> None:
    statements = _policy("ExecutionRole")["Statement"]
    for statement in statements:
        if statement["Resource"] == "*":  # ECR's login token has no resource to name
            assert statement["Action"] == "ecr:GetAuthorizationToken"
    document = {"Version": "2012-10-17", "Statement": statements}
    analysed = parliament.analyze_policy_string(json.dumps(document))
    assert [f.issue for f in analysed.findings] == []
