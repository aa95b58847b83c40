"""In-process doubles for KMS and a keyset, for pool tests that need no network."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from sealq.envelope.jwk import PrivateKeyObject, alg_for_key
from sealq.keys.keyset import KeyRecord, Keyset, KeySpec, KeyState
from sealq.keys.store import KeysetStore

_SPECS = {"secp256r1": KeySpec.ECC_NIST_P256, "secp384r1": KeySpec.ECC_NIST_P384}


class FakeKMS:
    """Decrypt returns the PKCS#8 DER registered for a blob; can be made to fail."""

    def __init__(self) -> None:
        self.blobs: dict[bytes, bytes] = {}
        self.calls = 0
        self.failing: str | None = None  # an AWS error code to raise while set
        self.delay_s = 0.0

    def register(self, private: PrivateKeyObject) -> bytes:
        blob = f"blob-{len(self.blobs)}".encode()
        self.blobs[blob] = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return blob

    async def decrypt(self, **kw: Any) -> dict[str, Any]:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failing:
            raise ClientError({"Error": {"Code": self.failing, "Message": "fake"}}, "Decrypt")
        return {"Plaintext": self.blobs[kw["CiphertextBlob"]], "KeyId": kw.get("KeyId")}


def record_for(
    kms: FakeKMS,
    private: PrivateKeyObject,
    kid: str,
    *,
    expires_in_s: float = 3600,
    now: datetime | None = None,
    shredded: bool = False,
) -> KeyRecord:
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    curve = getattr(private, "curve", None)
    spec = _SPECS[curve.name] if curve is not None else KeySpec(f"RSA_{private.key_size}")
    return KeyRecord(
        kid=kid,
        key_spec=spec,
        alg=alg_for_key(private),
        cmk_arn="arn:aws:kms:us-east-1:000000000000:key/fake",
        public_key=base64.b64encode(public_der).decode(),
        wrapped_private_key=None if shredded else base64.b64encode(kms.register(private)).decode(),
        created_at=now - timedelta(seconds=10),
        not_before=now - timedelta(seconds=10),
        expires_at=now + timedelta(seconds=expires_in_s),
        state=KeyState.EXPIRED if shredded else KeyState.ACTIVE,
    )


def write_keyset(path: Path, *records: KeyRecord) -> KeysetStore:
    store = KeysetStore(path)
    keyset = Keyset()
    for r in records:
        keyset = keyset.with_record(r)
    store.save(keyset)
    return store
