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
