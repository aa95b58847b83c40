"""A test double for KMS Decrypt, and a keyset of fake-wrapped keys to go with it.

`FakeKMS` stands in for the one KMS call the worker makes, `Decrypt` of a key pair's
`PrivateKeyCiphertextBlob`, and keeps the rules of it that sealq relies on:

- it answers with the private key as PKCS#8 DER, as KMS does for a data key pair;
- a blob it did not issue is refused with `InvalidCiphertextException`;
- the EncryptionContext must be exactly the one the blob was wrapped with (the record's kid
  and expiry), else `InvalidCiphertextException`: so an edited keyset cannot be unwrapped;
- errors are botocore `ClientError`s with AWS's codes (`failing` raises one on demand).

The "wrapped" blob is an opaque label (`blob-0`, ...); the private key stays in this
object's memory and never reaches the keyset file, as with real KMS. Not kept: key policies,
key states (disabled, pending deletion), grants, quotas. The signing calls (CreateKey,
CreateAlias, GetPublicKey, Sign) come from sealq.testing.kms_sign.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization

from sealq.envelope.jwk import PrivateKeyObject, alg_for_key
from sealq.keys.keyset import KeyRecord, Keyset, KeySpec, KeyState
from sealq.keys.store import KeysetStore
from sealq.testing.kms_sign import SigningKeys

FAKE_CMK_ARN = "arn:aws:kms:us-east-1:000000000000:key/fake"
_SPECS = {
    "secp256r1": KeySpec.ECC_NIST_P256,
    "secp384r1": KeySpec.ECC_NIST_P384,
    "secp521r1": KeySpec.ECC_NIST_P521,
}


class FakeKMS(SigningKeys):
    """Decrypt returns the PKCS#8 DER registered for a blob; can be made slow or failing."""

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[bytes, bytes] = {}
        self.contexts: dict[bytes, dict[str, str]] = {}
        self.calls = 0
        self.failing: str | None = None  # an AWS error code to raise while set
        self.delay_s = 0.0

    def register(self, private: PrivateKeyObject, context: Mapping[str, str] | None = None) -> bytes:
        """Wrap a private key: return the blob that Decrypt (with `context`) unwraps."""
        blob = f"blob-{len(self.blobs)}".encode()
        self.blobs[blob] = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if context is not None:
            self.contexts[blob] = dict(context)
        return blob

    async def decrypt(self, **kw: Any) -> dict[str, Any]:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failing:
            raise _error(self.failing, "fake failure")
        blob = kw["CiphertextBlob"]
        plaintext, expected = self.blobs.get(blob), self.contexts.get(blob)
        context = dict(kw.get("EncryptionContext") or {})
        if plaintext is None or (expected is not None and context != expected):
            raise _error("InvalidCiphertextException", "")
        return {"Plaintext": plaintext, "KeyId": kw.get("KeyId") or FAKE_CMK_ARN}


def _error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Decrypt")


def record_for(
    kms: FakeKMS,
    private: PrivateKeyObject,
    kid: str,
    *,
    expires_in_s: float = 3600,
    now: datetime | None = None,
    shredded: bool = False,
) -> KeyRecord:
    """A keyset record for `private`, wrapped by `kms`, valid from 10 s before `now`."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    curve = getattr(private, "curve", None)
    spec = _SPECS[curve.name] if curve is not None else KeySpec(f"RSA_{private.key_size}")
    record = KeyRecord(
        kid=kid,
        key_spec=spec,
        alg=alg_for_key(private),
        cmk_arn=FAKE_CMK_ARN,
        public_key=base64.b64encode(public_der).decode(),
        created_at=now - timedelta(seconds=10),
        not_before=now - timedelta(seconds=10),
        expires_at=now + timedelta(seconds=expires_in_s),
        state=KeyState.EXPIRED if shredded else KeyState.ACTIVE,
    )
    if shredded:
        return record
    blob = kms.register(private, record.encryption_context())
    return record.model_copy(update={"wrapped_private_key": base64.b64encode(blob).decode()})


def write_keyset(path: Path, *records: KeyRecord) -> KeysetStore:
    """Save `records` as a keyset file at `path`; return the store the worker reads it through."""
    store = KeysetStore(path)
    keyset = Keyset()
    for r in records:
        keyset = keyset.with_record(r)
    store.save(keyset)
    return store
