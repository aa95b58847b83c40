"""docker/iam: one least-privilege policy per role, linted with parliament (offline), with
no `*` resource, and granting exactly the AWS calls sealq's code makes for that role: the
calls are found in the source, so a new SQS/KMS/S3 call without its permission fails here."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import parliament
import pytest
from botocore import xform_name
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.testing.kms import FakeKMS, record_for
from tests.unit.deploy_helpers import IAM, ROOT

POLICIES = sorted(p.stem for p in IAM.glob("*.json"))
IAM_ACTIONS = {
    "sqs:SendMessageBatch": {"sqs:SendMessage"},
    "sqs:DeleteMessageBatch": {"sqs:DeleteMessage"},
    "sqs:ChangeMessageVisibilityBatch": {"sqs:ChangeMessageVisibility"},
    "kms:ReEncrypt": {"kms:ReEncryptFrom", "kms:ReEncryptTo"},
}
"""API operations that IAM authorises under other action names (batches by their
single-message action; ReEncrypt needs both halves)."""
ROLE_SOURCES = {
    "worker": ["worker/sealq/worker"],
    "operator": ["worker/sealq/keys", "worker/sealq/dlq"],
    "producer": ["producer/sealq/producer"],
}
ROLE_CALLS_ELSEWHERE = {
    "worker": {"s3:GetObject"},  # the keyset, read through sealq.keys.store
}
GRANTED_AHEAD_OF_CODE = {
    # Without s3:ListBucket S3 answers a missing payload object with AccessDenied, and the
    # worker could not dead-letter it as payload-missing (worker-payloads.json).
    "worker": {"s3:ListBucket"},
    "operator": {
        # s3:ListBucket on the keyset's prefix only: without it S3 answers a missing keyset
        # with AccessDenied, and `keys create` could not tell "no keyset yet" from "denied".
        "s3:ListBucket",
        # Re-wrapping a key under a new EncryptionContext inside KMS (binding existing keys to
        # their alg and public key, issue 10) never exposes the private key to the operator.
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
    },
}
SIGNER_ACTIONS = {"kms:Sign", "kms:GetPublicKey"}
LOCAL_CALLS = {"verify"}
"""Method names sealq calls on non-AWS objects too: `verify` is cryptography's ECDSA check of a
signed key set (producer) or of KMS's signature (operator); neither calls kms:Verify."""
NOT_THIS_ROLES = {
    # `keys verify` unwraps keys: run it with the worker's role. Operators never hold Decrypt.
    "operator": {"kms:Decrypt"},
    # Asked once on a FIFO queue (content-based deduplication on?); denied, the producer sends
    # random deduplication ids, which every FIFO queue accepts. Not worth a grant.
    "producer": {"sqs:GetQueueAttributes"},
}


def policy(name: str) -> dict[str, Any]:
    return dict(json.loads((IAM / f"{name}.json").read_text()))


def findings(document: dict[str, Any]) -> list[str]:
    analysed = parliament.analyze_policy_string(json.dumps(document), include_community_auditors=True)
    return [f"{f.issue} ({parliament.config[f.issue]['severity']}): {f.detail}" for f in analysed.findings]


@pytest.mark.parametrize("name", POLICIES)
def test_parliament_finds_nothing(name: str) -> None:
    assert findings(policy(name)) == []


def test_parliament_is_live() -> None:
    """The linter does flag a wrong action and a condition key the action does not take."""
    bad = policy("worker")
    bad["Statement"][0]["Action"] = ["sqs:RecieveMessage"]
    bad["Statement"][2]["Condition"] = {"StringEquals": {"kms:DataKeyPairSpec": "RSA_2048"}}
    issues = findings(bad)
    assert any(i.startswith("UNKNOWN_ACTION") for i in issues), issues
    assert any(i.startswith("UNKNOWN_CONDITION_FOR_ACTION") for i in issues), issues


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document["Statement"]
    return [found] if isinstance(found, dict) else list(found)


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


@pytest.mark.parametrize("name", POLICIES)
def test_no_star_resource_and_no_wildcard_action(name: str) -> None:
    for statement in statements(policy(name)):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        assert all("*" not in a for a in as_list(statement["Action"])), statement["Sid"]
        for resource in as_list(statement["Resource"]):
            # Payload objects have random keys: a named bucket and prefix is as narrow as it gets.
            named = resource.startswith("arn:aws:s3:::") and re.fullmatch(r"[^*]+/[^*/]+/\*", resource)
            assert "*" not in resource or named, statement["Sid"]


@cache
def _operations() -> dict[str, set[str]]:
    """boto3 method name -> the IAM actions it needs, for the services sealq calls."""
    session = botocore.session.get_session()
    table = {}
    for service in ("sqs", "kms", "s3"):
        for op in session.get_service_model(service).operation_names:
            action = f"{service}:{op}"
            table[xform_name(op)] = IAM_ACTIONS.get(action, {action})
    return table


def calls_in(folders: list[str]) -> set[str]:
    """The IAM actions behind every boto3 call written in these source folders."""
    ops = _operations()
    found = set()
    for folder in folders:
        for path in Path(ROOT, folder).glob("*.py"):
            for method in re.findall(r"\.([a-z_0-9]+)\(", path.read_text()):
                if method not in LOCAL_CALLS:
                    found |= ops.get(method, set())
    return found


def granted(name: str) -> set[str]:
    """The role's policy and, where there is one, its add-on for payloads through S3."""
    names = [name] + ([f"{name}-payloads"] if f"{name}-payloads" in POLICIES else [])
    return {a for n in names for s in statements(policy(n)) for a in as_list(s["Action"])}


@pytest.mark.parametrize("role", sorted(ROLE_SOURCES))
def test_each_role_is_granted_exactly_the_calls_its_code_makes(role: str) -> None:
    needed = (calls_in(ROLE_SOURCES[role]) | ROLE_CALLS_ELSEWHERE.get(role, set())) - NOT_THIS_ROLES.get(
        role, set()
    )
    assert needed, role  # the scan found the calls
    assert needed <= granted(role), f"{role} lacks {sorted(needed - granted(role))}"
    extra = granted(role) - needed - GRANTED_AHEAD_OF_CODE.get(role, set())
    assert not extra, f"{role} is granted {sorted(extra)} that no code of its calls"


def test_the_scaler_only_reads_queue_depth() -> None:
    [statement] = statements(policy("keda-scaler"))
    assert as_list(statement["Action"]) == ["sqs:GetQueueAttributes"]
    assert statement["Resource"] == statements(policy("worker"))[0]["Resource"]


def test_decrypt_is_for_sealq_keys_only() -> None:
    """kms:Decrypt (and the key-making calls) only with sealq's EncryptionContext: sealq:kid
    present, no key outside sealq's set, so the role cannot unwrap other data under the CMK."""
    keys = {"sealq:kid", "sealq:expires-at", "sealq:alg", "sealq:spki-sha256"}
    for name in ("worker", "operator"):
        for statement in statements(policy(name)):
            actions = set(as_list(statement["Action"]))
            # The signing key (keys publish --sign-with) wraps nothing: no context to bind.
            if not any(a.startswith("kms:") for a in actions) or actions <= SIGNER_ACTIONS:
                continue
            condition = statement["Condition"]
            assert set(condition["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == keys
            assert condition["ForAnyValue:StringEquals"]["kms:EncryptionContextKeys"] == ["sealq:kid"]
    # The context sealq binds today is within that set (a new context key must be added here).
    record = record_for(FakeKMS(), ec.generate_private_key(ec.SECP256R1()), "p256-iam")
    assert set(record.encryption_context()) <= keys


def test_calls_map_to_the_actions_iam_checks() -> None:
    ops = _operations()
    assert ops["delete_message_batch"] == {"sqs:DeleteMessage"}
    assert ops["re_encrypt"] == {"kms:ReEncryptFrom", "kms:ReEncryptTo"}
    assert ops["generate_data_key_pair_without_plaintext"] == {"kms:GenerateDataKeyPairWithoutPlaintext"}
