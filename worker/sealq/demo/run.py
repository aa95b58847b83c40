"""`sealq demo`: the whole product on the embedded local AWS stand-in, no account needed.

Starts the stand-in, creates a CMK, a queue with its DLQ, a P-256 key, an RSA-4096 key and a
key that has already expired, sends a mix of good and bad messages, runs the worker pool
until the queue is empty, and checks every count against what the mix implies. The command
itself (arguments, the stand-in's lifetime, printing) is `sealq.cli.demo`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from sealq.aws.clients import client
from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_FORMAT, ATTR_KEY_ID
from sealq.envelope.jwe import seal_at
from sealq.envelope.jwk import SealingKey, alg_for_key
from sealq.envelope.raw import RAW_FORMAT, seal_raw
from sealq.errors import Reason
from sealq.keys.keyset import KeyRecord, Keyset, KeySpec
from sealq.keys.kms import create_key
from sealq.keys.store import KeysetStore
from sealq.producer.sync_producer import Producer
from sealq.progress import Progress
from sealq.worker.app import open_clients
from sealq.worker.handler import HandlerRejected, Message
from sealq.worker.http import HealthServer
from sealq.worker.pool import Worker
from sealq.worker.settings import WorkerSettings

log = logging.getLogger("sealq.demo")


# ----- the demo handler ------------------------------------------------------------------

HANDLED: list[str] = []


async def handle(message: Message) -> None:
    """Accepts orders; rejects ones marked for rejection; fails on ones marked to fail."""
    order = message.json()
    if order.get("reject"):
        raise HandlerRejected("order failed validation")
    if order.get("fail"):
        raise RuntimeError("downstream unavailable")
    HANDLED.append(message.message_id)


# ----- the mix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mix:
    p256: int = 300
    rsa4096: int = 40
    raw: int = 5
    expired: int = 10
    unknown_kid: int = 5
    tampered: int = 5
    kid_mismatch: int = 5
    malformed: int = 5
    rejected: int = 5
    failing: int = 3

    def expected(self) -> dict[str, Any]:
        return {
            "handled": self.p256 + self.rsa4096 + self.raw,
            "dead_lettered": {
                Reason.KEY_EXPIRED.value: self.expired,
                Reason.UNKNOWN_KEY.value: self.unknown_kid,
                Reason.DECRYPT_FAILED.value: self.tampered,
                Reason.KID_MISMATCH.value: self.kid_mismatch,
                Reason.MALFORMED.value: self.malformed,
                Reason.HANDLER_REJECTED.value: self.rejected,
                Reason.HANDLER_ERROR.value: self.failing,
            },
            "kms_decrypt_calls": 2,
        }

    @property
    def total(self) -> int:
        return sum(self.__dict__.values())


def _attrs(kid: str, client_id: str, **extra: str) -> dict[str, dict[str, str]]:
    values = {ATTR_KEY_ID: kid, ATTR_CLIENT_ID: client_id, **extra}
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}


def _order(i: int, **flags: bool) -> bytes:
    return json.dumps({"order": i, "sku": f"SKU-{i % 17}", "qty": 1 + i % 3, **flags}).encode()


def send_mix(sqs: Any, queue_url: str, mix: Mix, p256: KeyRecord, rsa: KeyRecord, stale: KeyRecord) -> None:
    jwks_p256 = {"keys": [p256.jwk()]}
    jwks_rsa = {"keys": [rsa.jwk()]}
    eu = Producer(queue_url, jwks_p256, client_id="shop-eu", sqs_client=sqs)
    us = Producer(queue_url, jwks_rsa, client_id="shop-us", sqs_client=sqs)
    for result in (
        eu.send_batch(_order(i) for i in range(mix.p256)),
        us.send_batch(_order(i) for i in range(mix.rsa4096)),
        eu.send_batch(_order(i, reject=True) for i in range(mix.rejected)),
        eu.send_batch(_order(i, fail=True) for i in range(mix.failing)),
    ):
        if not result.ok:
            raise RuntimeError(f"demo send failed: {result.failed[0]}")
    now = time.time()
    stray = ec.generate_private_key(ec.SECP256R1())
    unknown = SealingKey("p256-20200101-deadbeef", alg_for_key(stray.public_key()), stray.public_key())
    bodies: list[tuple[str, dict[str, dict[str, str]]]] = []
    rsa_public = rsa.public_key_object()
    for i in range(mix.raw):
        body = seal_raw(json.dumps({"order": i, "via": "openssl"}).encode(), rsa_public)  # type: ignore[arg-type]
        bodies.append((body.decode(), _attrs(rsa.kid, "shell-client", **{ATTR_FORMAT: RAW_FORMAT})))
    for i in range(mix.expired):
        token = seal_at(_order(i), stale.sealing_key(), now)
        bodies.append((token.decode(), _attrs(stale.kid, "legacy-cron")))
    for i in range(mix.unknown_kid):
        bodies.append((seal_at(_order(i), unknown, now).decode(), _attrs(unknown.kid, "rogue")))
    for i in range(mix.tampered):
        tampered = bytearray(seal_at(_order(i), p256.sealing_key(), now))
        cut = tampered.rindex(b".") - 3  # inside the ciphertext part
        tampered[cut] = ord("A") if tampered[cut] != ord("A") else ord("B")
        bodies.append((tampered.decode(), _attrs(p256.kid, "flaky-proxy")))
    for i in range(mix.kid_mismatch):
        bodies.append((seal_at(_order(i), p256.sealing_key(), now).decode(), _attrs(rsa.kid, "confused")))
    for i in range(mix.malformed):
        bodies.append((f"not a sealed message {i}", _attrs(p256.kid, "plaintext-sender")))
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": b, "MessageAttributes": a} for i, (b, a) in enumerate(chunk)
            ],
        )
        if response.get("Failed"):
            raise RuntimeError(f"demo send failed: {response['Failed'][0]}")


# ----- orchestration ---------------------------------------------------------------------


def setup_aws(workdir: Path) -> dict[str, Any]:
    kms, sqs = client("kms"), client("sqs")
    cmk = kms.create_key(Description="sealq demo CMK")["KeyMetadata"]["Arn"]
    dlq_url = sqs.create_queue(QueueName="sealq-demo-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName="sealq-demo",
        Attributes={
            "VisibilityTimeout": "30",
            # A backstop only: sealq dead-letters with a reason long before this.
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "50"}),
        },
    )["QueueUrl"]
    store = KeysetStore(workdir / "keyset.json")
    now = datetime.now(UTC).replace(microsecond=0)
    stale = create_key(kms, cmk=cmk, spec=KeySpec.ECC_NIST_P256, lifetime=timedelta(seconds=2), now=now)
    p256 = create_key(kms, cmk=cmk, spec=KeySpec.ECC_NIST_P256, lifetime=timedelta(days=30), now=now)
    rsa = create_key(kms, cmk=cmk, spec=KeySpec.RSA_4096, lifetime=timedelta(days=30), now=now)
    keyset = Keyset().with_record(stale).with_record(p256).with_record(rsa)
    store.save(keyset)
    (workdir / "jwks.json").write_text(json.dumps(keyset.jwks(datetime.now(UTC)), indent=2))
    wait = stale.expires_at.timestamp() - time.time()
    if wait > 0:
        time.sleep(wait + 0.1)  # the stale key must really be expired when its messages go out
    return {
        "sqs": sqs,
        "cmk": cmk,
        "queue_url": queue_url,
        "dlq_url": dlq_url,
        "store": store,
        "p256": p256,
        "rsa": rsa,
        "stale": stale,
    }


def _queue_depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


async def run_pool(
    aws: dict[str, Any], mix: Mix, timeout_s: float, show: bool
) -> tuple[Worker, float, dict[str, Any]]:
    settings = WorkerSettings(
        queue_url=aws["queue_url"],
        dlq_url=aws["dlq_url"],
        keyset=aws["store"].location,
        handler="sealq.demo.run:handle",
        concurrency=16,
        wait_time_s=1,
        visibility_timeout_s=30,
        heartbeat_s=10,
        max_attempts=2,
        backoff_base_s=0.5,
        backoff_max_s=1,
        shutdown_grace_s=5,
    )
    async with AsyncExitStack() as stack:
        sqs, kms = await open_clients(stack, settings)
        worker = Worker(settings, handle, sqs=sqs, kms=kms, keystore=aws["store"])
        server = HealthServer(worker, "127.0.0.1", 0)
        port = await server.start()
        stack.push_async_callback(server.stop)
        task = asyncio.create_task(worker.run())
        started = time.monotonic()
        with Progress("messages", total=mix.total, enabled=show) as progress:
            while True:
                await asyncio.sleep(0.1)
                done = worker.stats.handled + worker.stats.dead_lettered_total
                progress.advance(done - progress.done)
                if done >= mix.total and worker.in_flight == 0:
                    break
                if task.done() or time.monotonic() - started > timeout_s:
                    break
        elapsed = time.monotonic() - started
        # Read the counts back the way Prometheus would, to show /metrics tells the truth.
        metrics = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
        worker.stop()
        await task
    return worker, elapsed, metrics


def scrape(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own loopback port
        text = response.read().decode()
    out: dict[str, Any] = {"dead_lettered": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sealq_handled_total":
                out["handled"] = int(sample.value)
            elif sample.name == "sealq_kms_decrypt_calls_total":
                out["kms_decrypt_calls"] = int(sample.value)
            elif sample.name == "sealq_dead_lettered_total":
                reason, kid = sample.labels["reason"], sample.labels["kid"] or "-"
                out["dead_lettered"].setdefault(reason, {})[kid] = int(sample.value)
    return out


def summarize(worker: Worker, elapsed: float, mix: Mix, aws: dict[str, Any]) -> dict[str, Any]:
    stats = worker.stats
    dead = stats.dead_lettered_by_reason()
    by_kid: dict[str, dict[str, int]] = {}
    for (reason, kid), count in stats.dead_lettered.items():
        by_kid.setdefault(reason, {})[kid or "-"] = count
    return {
        "handled": stats.handled,
        "dead_lettered": dict(sorted(dead.items())),
        "dead_lettered_by_kid": by_kid,
        "kms_decrypt_calls": worker.keys.decrypt_calls,
        "retries": stats.retried,
        "messages": mix.total,
        "seconds": round(elapsed, 2),
        "messages_per_s": round(mix.total / elapsed, 1) if elapsed else None,
        "queue_left": _queue_depth(aws["sqs"], aws["queue_url"]),
        "dlq_depth": _queue_depth(aws["sqs"], aws["dlq_url"]),
        "keys": {"p256": aws["p256"].kid, "rsa4096": aws["rsa"].kid, "expired": aws["stale"].kid},
        "queue_url": aws["queue_url"],
        "dlq_url": aws["dlq_url"],
    }


def check(report: dict[str, Any], mix: Mix) -> list[str]:
    expected = mix.expected()
    problems = []
    if report["handled"] != expected["handled"]:
        problems.append(f"handled {report['handled']}, expected {expected['handled']}")
    for reason, count in expected["dead_lettered"].items():
        got = report["dead_lettered"].get(reason, 0)
        if got != count:
            problems.append(f"{reason}: {got} dead-lettered, expected {count}")
    extra = set(report["dead_lettered"]) - set(expected["dead_lettered"])
    problems += [f"unexpected reason {r}" for r in sorted(extra)]
    if report["kms_decrypt_calls"] != expected["kms_decrypt_calls"]:
        problems.append(
            f"{report['kms_decrypt_calls']} KMS Decrypt calls, expected {expected['kms_decrypt_calls']}"
        )
    metrics = report.get("metrics", {})
    if (metrics.get("handled"), metrics.get("kms_decrypt_calls"), metrics.get("dead_lettered")) != (
        report["handled"],
        report["kms_decrypt_calls"],
        report["dead_lettered_by_kid"],
    ):
        problems.append("/metrics does not match the worker's own counts")
    if report["queue_left"] != 0:
        problems.append(f"{report['queue_left']} messages left in the queue")
    if report["dlq_depth"] != sum(expected["dead_lettered"].values()):
        problems.append(
            f"DLQ holds {report['dlq_depth']}, expected {sum(expected['dead_lettered'].values())}"
        )
    return problems
