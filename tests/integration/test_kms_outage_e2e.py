"""KMS going down mid-stream, end to end against the local AWS stand-in over HTTP.

The worker is already handling messages under a key it has unwrapped when KMS becomes
unreachable (a loopback proxy in front of the stand-in's KMS is taken down). While KMS is
down a second key is added to the keyset and messages under it arrive: the worker re-reads
the keyset on the unknown kid, and unwrapping the new key needs a KMS Decrypt that cannot
succeed until KMS is back. Messages under the cached key need no KMS and keep flowing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest

from sealq.demo.standin import StandIn
from sealq.envelope.jwe import seal_at
from sealq.keys.keyset import KeyRecord, KeySpec
from sealq.keys.kms import create_key
from sealq.keys.store import KeysetStore
from sealq.worker.app import open_clients
from sealq.worker.handler import Message
from sealq.worker.pool import Tuning, Worker
from tests.integration import test_worker_e2e
from tests.integration.test_worker_e2e import Proxy, Setup, running

setup = test_worker_e2e.setup  # the fixture: queues, a DLQ, a CMK and key A in a keyset


def send_under(s: Setup, record: KeyRecord, texts: list[str]) -> None:
    key = record.sealing_key()
    s.send_bodies([seal_at(t.encode(), key, time.time()).decode() for t in texts], record.kid)


async def until(cond: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout}s: {what()}"
        await asyncio.sleep(0.05)


async def test_kms_outage_mid_stream_holds_the_new_key_and_keeps_the_cached_one_flowing(
    setup: Setup, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setup
    proxy = Proxy(standin.port)
    await proxy.up()  # KMS reachable at first, through the proxy (SQS goes direct)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", f"http://127.0.0.1:{proxy.port}")
    seen: list[str] = []

    async def handle(message: Message) -> None:
        seen.append(message.plaintext.decode())

    def count(prefix: str) -> int:
        return sum(1 for t in seen if t.startswith(prefix))

    settings = s.in_process_settings()
    before = [f"a-before-{i}" for i in range(10)]
    during = [f"a-during-{i}" for i in range(10)]
    new = [f"b-{i}" for i in range(10)]
    tuning = Tuning(kms_retry_s=1, unknown_kid_refresh_min_s=0.2)
    try:
        async with AsyncExitStack() as stack:
            sqs, kms = await open_clients(stack)
            worker = Worker(settings, handle, sqs=sqs, kms=kms, keystore=KeysetStore(s.keyset), tuning=tuning)
            async with running(worker):
                # 1. Steady state under key A: its private key is unwrapped once and cached.
                await asyncio.to_thread(s.send, before)
                await until(lambda: count("a-before-") == 10, 15, lambda: f"{len(seen)} handled before")
                assert worker.keys.decrypt_calls == 1

                # 2. KMS goes down mid-stream. Key B is created (directly at the stand-in, as
                # `keys rotate` would from elsewhere) and added to the keyset the worker reads.
                await proxy.down()
                cmk, spec, now = s.record.cmk_arn, KeySpec.ECC_NIST_P256, datetime.now(UTC)
                b = await asyncio.to_thread(
                    create_key, s.kms, cmk=cmk, spec=spec, lifetime=timedelta(days=1), now=now
                )
                store = KeysetStore(s.keyset)
                await asyncio.to_thread(lambda: store.save(store.load().with_record(b)))
                await asyncio.to_thread(send_under, s, b, new)
                # Every key-B message bounces off KMS: retried, not dead-lettered.
                bounced = lambda: worker.stats.retried + worker.stats.dead_lettered_total  # noqa: E731
                await until(lambda: bounced() >= 10, 15, lambda: f"{bounced()} B deliveries settled")
                assert worker.stats.dead_lettered_total == 0
                assert sum(worker.keys.kms_errors.values()) >= 1  # B's Decrypt was tried, and failed
                # After KMS failed us, key A still needs no KMS: its messages keep being handled.
                await asyncio.to_thread(s.send, during)
                await until(lambda: count("a-during-") == 10, 15, lambda: f"{count('a-during-')} of A during")
                assert count("b-") == 0
                assert await asyncio.to_thread(s.depth, s.dlq_url) == 0
                assert await asyncio.to_thread(s.depth, s.queue_url) == 10  # the B ones, kept

                # 3. KMS is back: key B is unwrapped and its messages are handled.
                await proxy.up()
                deadline = time.monotonic()
                await until(lambda: count("b-") == 10, 15, lambda: f"{count('b-')} of B after KMS came back")
                while await asyncio.to_thread(s.depth, s.queue_url):
                    assert time.monotonic() < deadline + 10, "queue not drained"
                    await asyncio.sleep(0.1)
    finally:
        await proxy.down()
    # Exactly once: a message whose key KMS cannot unwrap goes back to SQS before its
    # handler starts, so the retries never run a handler; each message is deleted after
    # its handler succeeded, well inside its 30 s visibility timeout (no redelivery).
    assert Counter(seen) == Counter(before + during + new)
    assert worker.stats.dead_lettered_total == 0
    assert s.depth(s.dlq_url) == 0
    assert b.kid in worker.keys  # B was unwrapped through KMS once it was back
