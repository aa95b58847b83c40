"""Keys that cannot be unwrapped, and what each costs: KMS calls, logs, metrics, outcomes.

Uses the worker rig of test_pool (MemorySQS, FakeKMS, a keyset file in tmp_path).
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.envelope.attributes import ATTR_DETAIL
from sealq.envelope.jwe import seal_at
from sealq.errors import Reason
from sealq.testing.kms import FAKE_CMK_ARN, FakeKMS, record_for
from sealq.worker.classify import KeyEntry
from sealq.worker.http import HealthServer
from sealq.worker.keycache import KeyCache, KeyRefused
from sealq.worker.pool import Tuning
from tests.component.test_pool import (
    LIVE,
    Keys,
    Recorder,
    Rig,
    attrs,
    dlq_reason,
    keys,  # noqa: F401 - the fixture
    peek,
    running,
    sealing,
    until,
)

BROKEN = "ec-broken"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_unwrapped_bytes_that_do_not_load_cost_one_kms_call_per_cooldown() -> None:
    kms = FakeKMS()
    record = record_for(kms, ec.generate_private_key(ec.SECP256R1()), BROKEN)
    kms.blobs = {blob: b"not a PKCS#8 key" for blob in kms.blobs}
    entry = KeyEntry(record, record.expires_at.timestamp(), False)
    clock = Clock()
    cache = KeyCache(kms, failure_cooldown_s=2.0, clock=clock)
    errors = []
    for _ in range(50):  # fifty deliveries, one after another, within the cooldown
        try:
            await cache.get(entry)
        except KeyRefused as exc:
            errors.append(exc)
    assert len(errors) == 50 and kms.calls == 1
    assert BROKEN in str(errors[0]) and "not a PKCS#8" not in str(errors[0])
    clock.now += 2.5  # the cooldown is over: one more try
    for _ in range(10):
        with pytest.raises(KeyRefused):
            await cache.get(entry)
    assert kms.calls == 2


async def test_key_that_does_not_load_dead_letters_its_messages_for_one_kms_call(
    tmp_path: Path,
    keys: Keys,  # noqa: F811 - the fixture
) -> None:
    r = Rig(tmp_path / "keyset.json")
    r.add(keys.ec, LIVE)
    r.add(keys.ec2, BROKEN)
    r.save()
    broken_blob = r.records[BROKEN].wrapped_private_key
    assert broken_blob is not None
    r.kms.blobs[base64.b64decode(broken_blob)] = b"\x30\x03\x02\x01\x00"  # DER, but not a key
    handler = Recorder()
    clock = Clock()
    clock.now = time.time()  # held still: the failure cooldown cannot end during the test
    worker = r.worker(handler, clock=clock)
    async with running(worker):
        # Waves of deliveries, each after the last was settled: every one is a fresh get().
        for wave in range(5):
            for i in range(4):
                r.put(seal_at(f"b{wave}-{i}".encode(), sealing(BROKEN, keys.ec2), time.time()), attrs(BROKEN))
            good = r.put(seal_at(b"ok", sealing(LIVE, keys.ec), time.time()), attrs(LIVE))
            await until(
                lambda w=wave, g=good: len(peek(r.dlq)) == 4 * (w + 1) and g in handler.handled_ids(),
                what=f"wave {wave} settled",
            )
    assert {dlq_reason(m) for m in peek(r.dlq)} == {Reason.DECRYPT_FAILED.value}
    assert len(r.src) == 0 and len(handler.messages) == 5
    assert r.kms.calls == 2  # one for LIVE, one for BROKEN: not one per delivery


async def test_disabled_cmk_is_logged_counted_and_dead_lettered_key_unavailable_after_max_attempts(
    tmp_path: Path,
    keys: Keys,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = Rig(tmp_path / "keyset.json")
    r.add(keys.ec, LIVE)
    r.save()
    r.kms.failing = "DisabledException"
    key = sealing(LIVE, keys.ec)
    ids = {r.put(seal_at(f"o{i}".encode(), key, time.time()), attrs(LIVE)) for i in range(6)}
    handler = Recorder()
    clock = Clock()
    clock.now = time.time()  # held still: one KMS call, so exactly one error line, for the test
    worker = r.worker(handler, clock=clock, max_attempts=3, tuning=Tuning(kms_retry_s=0))
    caplog.set_level(logging.INFO, logger="sealq")
    async with running(worker):
        await until(lambda: len(peek(r.dlq)) == 6, timeout=10, what="all dead-lettered")
    assert not handler.messages and len(r.src) == 0
    dead = peek(r.dlq)
    assert len(dead) == len(ids)
    assert {dlq_reason(m) for m in dead} == {Reason.KEY_UNAVAILABLE.value}
    assert {m.attributes[ATTR_DETAIL]["StringValue"] for m in dead} == {"DisabledException"}
    # Each went to the DLQ on its max_attempts-th delivery, not before.
    assert (worker.stats.received, worker.stats.retried) == (6 * 3, 6 * 2)
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 1, [rec.getMessage() for rec in errors]
    fields = errors[0].sealq  # type: ignore[attr-defined]
    assert (fields["kid"], fields["code"]) == (LIVE, "DisabledException")
    assert r.kms.calls == 1 and worker.keys.kms_errors == {"DisabledException": 1}
    _, _, metrics = HealthServer(worker, "127.0.0.1", 0).route("/metrics")
    assert 'sealq_kms_errors_total{code="DisabledException"} 1.0' in metrics.decode()
    assert 'sealq_dead_lettered_total{kid="ec-live",reason="key-unavailable"} 6.0' in metrics.decode()


async def test_a_record_whose_public_key_was_swapped_is_refused_once_per_cooldown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A legacy (context 1) record edited to carry someone else's public key (producers would
    seal to it) while keeping our wrapped private key: KMS cannot tell, but the unwrapped key
    does not match, so the kid is refused. (A context-2 record: test_key_binding.)"""
    kms = FakeKMS()
    genuine = record_for(kms, ec.generate_private_key(ec.SECP256R1()), BROKEN, context=1)
    other = record_for(FakeKMS(), ec.generate_private_key(ec.SECP256R1()), "ec-other")
    swapped = genuine.model_copy(update={"public_key": other.public_key})
    entry = KeyEntry(swapped, swapped.expires_at.timestamp(), False)
    cache = KeyCache(kms, failure_cooldown_s=2.0, clock=Clock())
    caplog.set_level(logging.ERROR, logger="sealq.worker")
    for _ in range(20):
        with pytest.raises(KeyRefused, match="does not match its public key"):
            await cache.get(entry)
    assert kms.calls == 1 and BROKEN not in cache
    assert any("does not match its public key" in r.getMessage() for r in caplog.records)
    # the untouched record of the same key still opens
    fresh = KeyCache(kms)
    assert (await fresh.get(KeyEntry(genuine, genuine.expires_at.timestamp(), False))).kid == BROKEN


async def test_a_key_on_a_cmk_outside_allowed_cmk_arns_is_dead_lettered_without_calling_kms(
    tmp_path: Path,
    keys: Keys,  # noqa: F811 - the fixture
) -> None:
    """A keyset edited to point a key at another CMK (holding a pair someone else made) would
    unwrap and match; pinning the CMKs refuses it before any KMS call."""
    r = Rig(tmp_path / "keyset.json")
    r.add(keys.ec, LIVE)
    r.add(keys.ec2, BROKEN)
    foreign = "arn:aws:kms:us-east-1:111111111111:key/someone-else"
    r.records[BROKEN] = r.records[BROKEN].model_copy(update={"cmk_arn": foreign})
    r.save()
    handler = Recorder()
    worker = r.worker(handler, allowed_cmk_arns=f" {FAKE_CMK_ARN} ,arn:aws:kms:eu-west-1:0:key/spare")
    async with running(worker):
        bad = [
            r.put(seal_at(f"b{i}".encode(), sealing(BROKEN, keys.ec2), time.time()), attrs(BROKEN))
            for i in range(3)
        ]
        good = r.put(seal_at(b"ok", sealing(LIVE, keys.ec), time.time()), attrs(LIVE))
        await until(lambda: len(peek(r.dlq)) == len(bad) and good in handler.handled_ids(), what="settled")
    assert {dlq_reason(m) for m in peek(r.dlq)} == {Reason.DECRYPT_FAILED.value}
    assert r.kms.calls == 1  # LIVE only: the foreign CMK was never asked
    assert len(r.src) == 0 and len(handler.messages) == 1
