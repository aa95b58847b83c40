"""One-shot setup for docker/compose.yml: CMK, queue + DLQ with a redrive policy, one P-256
key and the published JWKS, all on the local AWS stand-in. Idempotent: a second run reuses
what exists. Writes SEALQ_KEYSET and $SEALQ_DATA/jwks.json; prints the queue URLs.

Runs outside Docker too (tests/integration/test_container.py does, against ministack).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sealq.aws.clients import client


def main() -> int:
    data = Path(os.environ.get("SEALQ_DATA", "/data"))
    keyset = os.environ.get("SEALQ_KEYSET", str(data / "keyset.json"))
    queue_name = os.environ.get("SEALQ_QUEUE_NAME", "sealq")
    kms, sqs = client("kms"), client("sqs")
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    if "alias/sealq" not in aliases:
        key_id = kms.create_key(Description="sealq local CMK")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/sealq", TargetKeyId=key_id)
    dlq_url = sqs.create_queue(QueueName=f"{queue_name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "50"})
    queue_url = sqs.create_queue(QueueName=queue_name, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    data.mkdir(parents=True, exist_ok=True)
    sealq = [sys.executable, "-m", "sealq.cli", "keys"]
    if not Path(keyset).exists():
        subprocess.run(
            [
                *sealq,
                "create",
                "--keyset",
                keyset,
                "--cmk",
                "alias/sealq",
                "--spec",
                "ECC_NIST_P256",
                "--expires-in",
                "30d",
            ],
            check=True,
        )
    subprocess.run([*sealq, "publish", "--keyset", keyset, "--out", str(data / "jwks.json")], check=True)
    print(json.dumps({"queue_url": queue_url, "dlq_url": dlq_url, "keyset": keyset}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
