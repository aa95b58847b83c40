"""What binds a keyset record to its key pair and CMK, checked through the `keys` commands
against the local AWS stand-in (bug 5 of the hardening issue)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sealq.demo.standin import StandIn

from .cli_helpers import cli_env, sealq, standin_client

OTHER_CMK = "arn:aws:kms:us-east-1:111111111111:key/someone-else"


def one_line_error(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.fixture
def made(standin: StandIn, tmp_path: Path) -> tuple[dict[str, str], str, str]:
    """A keyset with one key made through the CLI: (env, kid, the record's CMK ARN)."""
    kms: Any = standin_client(standin, "kms")
    cmk = str(kms.create_key(Description="sealq binding test")["KeyMetadata"]["KeyId"])
    env = cli_env(standin, tmp_path, SEALQ_ALLOWED_CMK_ARNS=None)
    kid = sealq(env, "keys", "create", "--cmk", cmk, "--expires-in", "30d").stdout.strip()
    (record,) = json.loads((tmp_path / "keyset.json").read_text())["keys"]
    return env, kid, str(record["cmk_arn"])


def bound(home: Path, kid: str) -> bool:
    """Whether the keyset record of `kid` says context 2 (public key and alg bound)."""
    records = {k["kid"]: k for k in json.loads((home / "keyset.json").read_text())["keys"]}
    return bool(records[kid].get("context") == 2)


def test_keys_commands_refuse_a_key_on_a_cmk_outside_the_allowed_list(
    made: tuple[dict[str, str], str, str],
) -> None:
    env, kid, arn = made
    pinned = dict(env, SEALQ_ALLOWED_CMK_ARNS=OTHER_CMK)
    one_line_error(sealq(pinned, "keys", "publish", check=False), kid, arn, "SEALQ_ALLOWED_CMK_ARNS")
    one_line_error(sealq(env, "keys", "export-pem", kid, "--allowed-cmk-arns", OTHER_CMK, check=False), kid)
    one_line_error(sealq(pinned, "keys", "rotate", check=False), kid, arn)
    # the flag overrides the variable; a list holding the record's CMK lets it through
    ok = sealq(pinned, "keys", "publish", "--allowed-cmk-arns", f"{OTHER_CMK},{arn}")
    assert [k["kid"] for k in json.loads(ok.stdout)["keys"]] == [kid]


def test_publish_refuses_a_record_whose_public_key_is_not_its_spec(
    made: tuple[dict[str, str], str, str], tmp_path: Path
) -> None:
    """Someone pasted an RSA public key into a P-256 record: clients must not get it."""
    env, kid, arn = made
    sealq(env, "keys", "create", "--cmk", arn, "--spec", "RSA_2048", "--expires-in", "30d")
    keyset = tmp_path / "keyset.json"
    document = json.loads(keyset.read_text())
    by_spec = {k["key_spec"]: k for k in document["keys"]}
    by_spec["ECC_NIST_P256"]["public_key"] = by_spec["RSA_2048"]["public_key"]
    keyset.write_text(json.dumps(document))
    out = tmp_path / "jwks.json"
    one_line_error(sealq(env, "keys", "publish", "--out", str(out), check=False), kid, "RSA_2048")
    assert not out.exists()


def test_verify_unwraps_each_live_key_and_reports_a_swapped_public_key(
    made: tuple[dict[str, str], str, str], tmp_path: Path
) -> None:
    env, kid, arn = made
    ok = sealq(env, "keys", "verify")
    assert ok.stdout.splitlines() == [f"{kid}: ok: the private key matches its public key"]
    other = sealq(env, "keys", "create", "--cmk", arn, "--expires-in", "30d").stdout.strip()
    keyset = tmp_path / "keyset.json"
    document = json.loads(keyset.read_text())
    by_kid = {k["kid"]: k for k in document["keys"]}
    by_kid[kid]["public_key"] = by_kid[other]["public_key"]  # same spec: publish cannot tell
    keyset.write_text(json.dumps(document))
    proc = sealq(env, "keys", "verify", check=False)
    assert proc.returncode == 1
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert set(lines) == {kid, other}
    assert lines[other].startswith("ok")
    if bound(tmp_path, kid):  # KMS itself refuses: the public key's hash is in the context
        assert lines[kid].startswith("KMS Decrypt refused: InvalidCiphertextException"), lines[kid]
    else:  # a legacy context (a KMS without ReEncrypt): the local match check catches it
        assert "does not match its public key" in lines[kid]
    assert "PRIVATE" not in proc.stdout + proc.stderr
