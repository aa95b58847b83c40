"""Private keys unwrapped through KMS: one Decrypt per kid per process, kept until expiry.

Single-flight: however many messages under a new kid arrive together, the first caller starts
the KMS call and the rest await the same future. Every failure (KMS refusing or unreachable,
unwrapped bytes that do not load as the record's key, a bug) is remembered for a short
cooldown, so it costs one call per kid per cooldown, not one per message. Unknown kids never
get here (classification stops them), so nothing a sender controls can trigger a KMS call
beyond the kids in our own keyset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sealq.aws.errors import KMS_MISCONFIGURED, KMS_PERMANENT, error_code
from sealq.envelope.jwe import OpeningKey
from sealq.keys.keyset import KeyRecord, cmk_refusal
from sealq.keys.kms import KeyMismatchError, KeyShreddedError, decrypt_request, load_private_key
from sealq.worker.classify import KeyEntry
from sealq.worker.logs import event

log = logging.getLogger("sealq.worker")


class KeyUnavailable(Exception):
    """KMS could not unwrap the key right now (throttled, unreachable, key disabled): retry.
    `code` is KMS's error code (or the exception's type); `misconfigured` when it says the
    CMK is missing, disabled or denied, which only an operator can fix."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code

    @property
    def misconfigured(self) -> bool:
        return self.code in KMS_MISCONFIGURED


class KeyRefused(Exception):
    """KMS refused the wrapped key for good (tampered blob or context): messages under it
    can never be opened."""


MAX_ERROR_CODES = 32
"""Distinct KMS error codes kept as metric labels; an endpoint cannot grow them without bound."""


class KeyCache:
    def __init__(
        self,
        kms: Any,
        *,
        executor: Executor | None = None,
        failure_cooldown_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        allowed_cmks: frozenset[str] = frozenset(),
    ) -> None:
        self._kms = kms
        self._allowed_cmks = allowed_cmks
        self._executor = executor
        self._cooldown = failure_cooldown_s
        self._clock = clock
        self._keys: dict[str, tuple[OpeningKey, float]] = {}
        self._pending: dict[str, asyncio.Future[OpeningKey]] = {}
        self._failures: dict[str, tuple[float, Exception]] = {}
        self.decrypt_calls = 0
        self.kms_errors: Counter[str] = Counter()
        """Failed KMS Decrypt calls by error code (at most MAX_ERROR_CODES codes, then `other`)."""

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: str) -> bool:
        return kid in self._keys

    def peek(self, kid: str) -> OpeningKey | None:
        """The cached key, without a coroutine: the per-message fast path."""
        cached = self._keys.get(kid)
        return cached[0] if cached is not None else None

    async def get(self, entry: KeyEntry) -> OpeningKey:
        kid = entry.record.kid
        cached = self._keys.get(kid)
        if cached is not None:
            return cached[0]
        pending = self._pending.get(kid)
        if pending is None:
            failure = self._failures.get(kid)
            if failure is not None and self._clock() - failure[0] < self._cooldown:
                raise failure[1]
            pending = asyncio.get_running_loop().create_future()
            self._pending[kid] = pending
            try:
                key = await self._unwrap(entry)
            except Exception as exc:
                error = exc if isinstance(exc, KeyUnavailable | KeyRefused) else self._bug(kid, exc)
                self._failures[kid] = (self._clock(), error)
                pending.set_exception(error)
                pending.exception()  # mark retrieved: waiters may be none
                raise error from None
            except BaseException as exc:
                # Cancellation: not the key's fault, so no cooldown; waiters must not hang.
                pending.set_exception(KeyUnavailable(f"unwrapping {kid} failed: {type(exc).__name__}"))
                pending.exception()
                raise
            finally:
                del self._pending[kid]
            self._failures.pop(kid, None)
            self._keys[kid] = (key, entry.expires_at)
            pending.set_result(key)
            return key
        return await asyncio.shield(pending)

    async def _unwrap(self, entry: KeyEntry) -> OpeningKey:
        refusal = cmk_refusal(entry.record, self._allowed_cmks)
        if refusal is not None:
            event(log, logging.ERROR, "key cmk not allowed", kid=entry.record.kid, cmk=entry.record.cmk_arn)
            raise KeyRefused(refusal)
        try:
            request = decrypt_request(entry.record)
        except KeyShreddedError as exc:
            raise KeyRefused(str(exc)) from None
        self.decrypt_calls += 1
        try:
            response = await self._kms.decrypt(**request)
        except (ClientError, TimeoutError, BotoCoreError, OSError) as exc:
            raise self._kms_failed(entry.record, error_code(exc)) from None
        der = response["Plaintext"]
        # Parsing costs ~ms for big RSA keys; keep it off the event loop.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _load, entry.record, der)

    def _kms_failed(self, record: KeyRecord, code: str) -> KeyUnavailable | KeyRefused:
        """Counted by code. Called at most once per kid per cooldown, so the error log for a
        CMK an operator must fix is rate-limited by construction."""
        known = code in self.kms_errors or len(self.kms_errors) < MAX_ERROR_CODES
        self.kms_errors[code if known else "other"] += 1
        if code in KMS_PERMANENT:
            return KeyRefused(f"KMS refused the wrapped key for {record.kid}: {code}")
        error = KeyUnavailable(f"KMS Decrypt for {record.kid} failed: {code}", code)
        if error.misconfigured:
            event(log, logging.ERROR, "kms key unavailable", kid=record.kid, code=code, cmk=record.cmk_arn)
        return error

    @staticmethod
    def _bug(kid: str, exc: Exception) -> KeyUnavailable:
        event(log, logging.ERROR, "key unwrap failed", kid=kid, error=type(exc).__name__)
        return KeyUnavailable(f"unwrapping {kid} failed: {type(exc).__name__}")

    def evict(self, kid: str) -> None:
        self._keys.pop(kid, None)
        self._failures.pop(kid, None)

    def evict_expired(self, now: float, grace_s: float) -> list[str]:
        """Drop keys past expiry + grace: after that no message under them may open."""
        gone = [kid for kid, (_, exp) in self._keys.items() if now >= exp + grace_s]
        for kid in gone:
            del self._keys[kid]
        return gone

    def kids(self) -> list[str]:
        return list(self._keys)


def _load(record: KeyRecord, der: bytes) -> OpeningKey:
    """What KMS unwrapped, as the record's key. Bytes that do not load as it (not a key, or
    not of the record's alg) never will: every message under the kid is refused."""
    try:
        return load_private_key(record, der)
    except KeyMismatchError as exc:
        event(log, logging.ERROR, "unwrapped key does not match its public key", kid=record.kid)
        raise KeyRefused(str(exc)) from None
    except Exception as exc:  # the message says only the type: never echo key material
        event(log, logging.ERROR, "unwrapped key does not load", kid=record.kid, error=type(exc).__name__)
        raise KeyRefused(
            f"the key KMS unwrapped for {record.kid} does not load as its {record.alg.value} key "
            f"({type(exc).__name__}); check the keyset record against its KMS key pair"
        ) from None
