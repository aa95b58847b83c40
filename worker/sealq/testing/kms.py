"""A test double for the KMS calls sealq makes, and a keyset of fake-wrapped keys to go with it.

`FakeKMS` stands in for `Decrypt` of a key pair's `PrivateKeyCiphertextBlob` (the worker's
one call, async like its aiobotocore client) and for the two calls of `keys create`
(`GenerateDataKeyPairWithoutPlaintext`, `ReEncrypt`; sync like the CLI's boto3 client), and
keeps the rules of them that sealq relies on:

- Decrypt answers with the private key as PKCS#8 DER, as KMS does for a data key pair;
- a blob it did not issue is refused with `InvalidCiphertextException`;
- the EncryptionContext must be exactly the one the blob was wrapped with (the record's kid
  and expiry; for a context-2 record also alg and public-key hash), else
  `InvalidCiphertextException`: so an edited keyset cannot be unwrapped;
- a `KeyId` (Decrypt) or `SourceKeyId` (ReEncrypt) naming another CMK than the blob's is
  `IncorrectKeyException`; a CMK it does not hold is `NotFoundException`;
- ReEncrypt checks the source context as Decrypt does and returns a new blob bound to the
  destination context and CMK (the plaintext is never returned; the old blob stays valid);
- errors are botocore `ClientError`s with AWS's codes (`failing` raises one from Decrypt on
  demand; `refusing` maps an operation to a code, e.g. `{"ReEncrypt": UNSUPPORTED}` for a
  KMS emulator without ReEncrypt, or `AccessDeniedException`).

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
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealq.envelope.jwk import PrivateKeyObject, alg_for_key
from sealq.keys.context import BOUND, ContextVersion
from sealq.keys.keyset import KeyRecord, Keyset, KeySpec, KeyState
from sealq.keys.store import KeysetStore
from sealq.testing.kms_sign import SigningKeys

FAKE_CMK_ARN = "arn:aws:kms:us-east-1:000000000000:key/fake"
UNSUPPORTED = "InvalidAction"
"""What ministack 1.5.33 answers an operation it lacks (`Unknown action: ReEncrypt`)."""
_CURVES: dict[str, ec.EllipticCurve] = {
    "ECC_NIST_P256": ec.SECP256R1(),
    "ECC_NIST_P384": ec.SECP384R1(),
    "ECC_NIST_P521": ec.SECP521R1(),
}
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
        self.cmks: dict[bytes, str] = {}
        self.calls = 0
        self.failing: str | None = None  # an AWS error code Decrypt raises while set
        self.refusing: dict[str, str] = {}  # operation name -> the AWS error code it answers
        self.delay_s = 0.0

    def register(self, private: PrivateKeyObject, context: Mapping[str, str] | None = None) -> bytes:
        """Wrap a private key: return the blob that Decrypt (with `context`) unwraps."""
        blob = f"blob-{len(self.blobs)}".encode()
        self.blobs[blob] = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.cmks[blob] = FAKE_CMK_ARN
        if context is not None:
            self.contexts[blob] = dict(context)
        return blob

    def _refuse(self, operation: str) -> None:
        code = self.refusing.get(operation)
        if code is not None:
            message = f"Unknown action: {operation}" if code == UNSUPPORTED else "fake refusal"
            raise _error(code, message, operation)

    @staticmethod
    def _cmk(key_id: str, operation: str) -> str:
        if key_id not in (FAKE_CMK_ARN, FAKE_CMK_ARN.rsplit("/", 1)[1]):
            raise _error("NotFoundException", f"Key '{key_id}' does not exist", operation)
        return FAKE_CMK_ARN

    def _source(self, blob: bytes, context: Mapping[str, str] | None, key_id: str | None, op: str) -> bytes:
        """The plaintext of `blob` if `context` and `key_id` are the ones it was wrapped with."""
        plaintext, expected = self.blobs.get(blob), self.contexts.get(blob)
        if plaintext is None or (expected is not None and dict(context or {}) != expected):
            raise _error("InvalidCiphertextException", "", op)
        if key_id and self._cmk(key_id, op) != self.cmks.get(blob, FAKE_CMK_ARN):
            raise _error("IncorrectKeyException", "", op)
        return plaintext

    def generate_data_key_pair_without_plaintext(self, **kw: Any) -> dict[str, Any]:
        self._refuse("GenerateDataKeyPairWithoutPlaintext")
        arn = self._cmk(kw["KeyId"], "GenerateDataKeyPairWithoutPlaintext")
        spec = kw["KeyPairSpec"]
        private: PrivateKeyObject
        if spec in _CURVES:
            private = ec.generate_private_key(_CURVES[spec])
        else:
            private = rsa.generate_private_key(65537, int(spec.removeprefix("RSA_")))
        blob = self.register(private, kw.get("EncryptionContext") or {})
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"KeyId": arn, "KeyPairSpec": spec, "PublicKey": public, "PrivateKeyCiphertextBlob": blob}

    def re_encrypt(self, **kw: Any) -> dict[str, Any]:
        self._refuse("ReEncrypt")
        plaintext = self._source(
            kw["CiphertextBlob"], kw.get("SourceEncryptionContext"), kw.get("SourceKeyId"), "ReEncrypt"
        )
        arn = self._cmk(kw["DestinationKeyId"], "ReEncrypt")
        blob = f"blob-{len(self.blobs)}".encode()
        self.blobs[blob], self.cmks[blob] = plaintext, arn
        self.contexts[blob] = dict(kw.get("DestinationEncryptionContext") or {})
        source = self.cmks.get(kw["CiphertextBlob"], FAKE_CMK_ARN)
        return {"CiphertextBlob": blob, "SourceKeyId": source, "KeyId": arn}

    async def decrypt(self, **kw: Any) -> dict[str, Any]:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failing:
            raise _error(self.failing, "fake failure")
        blob = kw["CiphertextBlob"]
        plaintext = self._source(blob, kw.get("EncryptionContext"), kw.get("KeyId"), "Decrypt")
        return {"Plaintext": plaintext, "KeyId": self.cmks.get(blob, FAKE_CMK_ARN)}


def _error(code: str, message: str, operation: str = "Decrypt") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def record_for(
    kms: FakeKMS,
    private: PrivateKeyObject,
    kid: str,
    *,
    expires_in_s: float = 3600,
    now: datetime | None = None,
    shredded: bool = False,
    context: ContextVersion = BOUND,
) -> KeyRecord:
    """A keyset record for `private`, wrapped by `kms`, valid from 10 s before `now`, under
    the context of version `context` (2, bound, as `keys create` makes; 1 for a legacy key)."""
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
        context=context,
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
