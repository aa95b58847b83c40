"""Creating key pairs through KMS and unwrapping their private keys.

KMS `GenerateDataKeyPairWithoutPlaintext` means the private key never exists in plain outside
KMS until a worker allowed to call kms:Decrypt unwraps it in memory. The EncryptionContext
binds the blob to its kid and expiry, so a keyset edited to extend a key's life cannot be
unwrapped.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealq.envelope.jwe import OpeningKey
from sealq.envelope.jwk import PublicKeyObject, alg_for_key
from sealq.errors import SealqError
from sealq.keys.keyset import KeyRecord, KeySpec, KeyState, new_kid


def create_key(
    kms: Any,
    *,
    cmk: str,
    spec: KeySpec,
    lifetime: timedelta,
    now: datetime,
    not_before: datetime | None = None,
) -> KeyRecord:
    """Generate a wrapped key pair under `cmk` (key id, ARN or alias)."""
    kid = new_kid(spec, now)
    start = (not_before or now).replace(microsecond=0)
    expires_at = (start + lifetime).replace(microsecond=0)
    draft = KeyRecord(
        kid=kid,
        key_spec=spec,
        alg=spec.alg,
        cmk_arn=cmk,
        public_key="",
        created_at=now,
        not_before=start,
        expires_at=expires_at,
    )
    response = kms.generate_data_key_pair_without_plaintext(
        KeyId=cmk, KeyPairSpec=spec.value, EncryptionContext=draft.encryption_context()
    )
    public_der: bytes = response["PublicKey"]
    public = serialization.load_der_public_key(public_der)
    if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ValueError(f"KMS returned an unexpected key type for {spec}")
    alg_for_key(public)  # refuses a key outside the profile
    return draft.model_copy(
        update={
            "cmk_arn": response.get("KeyId", cmk),
            "public_key": base64.b64encode(public_der).decode("ascii"),
            "wrapped_private_key": base64.b64encode(response["PrivateKeyCiphertextBlob"]).decode("ascii"),
            "state": KeyState.ACTIVE,
        }
    )


class KeyShreddedError(SealqError, LookupError):
    """The key's wrapped private key was erased (`keys expire`): nothing can open its messages."""

    def __init__(self, kid: str) -> None:
        super().__init__(
            f"key {kid!r} has expired and its private key was erased; messages sealed to it cannot "
            "be opened, so have clients seal to a current key (`sealq keys publish`)"
        )
        self.kid = kid


def decrypt_request(record: KeyRecord) -> dict[str, Any]:
    """The kms.Decrypt arguments for a record (shared by the sync and async paths)."""
    if record.wrapped_private_key is None:
        raise KeyShreddedError(record.kid)
    return {
        "CiphertextBlob": base64.b64decode(record.wrapped_private_key),
        "EncryptionContext": record.encryption_context(),
        "KeyId": record.cmk_arn,
    }


def load_private_key(record: KeyRecord, der: bytes) -> OpeningKey:
    """Parse the unwrapped PKCS#8 key. KMS has authenticated the blob, so RSA's costly
    consistency checks (~260 ms for 4096 bits) are skipped; the DER buffer is not kept."""
    key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unwrapped key for {record.kid} has an unexpected type")
    opening = OpeningKey(record.kid, key, int(record.expires_at.timestamp()))
    if opening.alg is not record.alg:
        raise ValueError(f"unwrapped key for {record.kid} does not match its alg {record.alg}")
    if not matches_public_key(record, key):
        raise KeyMismatchError(record.kid)
    return opening


def _spki(key: PublicKeyObject) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def matches_public_key(record: KeyRecord, private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bool:
    """Whether the unwrapped private key is the one behind the record's public key. A keyset
    whose public key was swapped would have producers seal to someone else's key."""
    return _spki(private.public_key()) == _spki(record.public_key_object())


class KeyMismatchError(SealqError, ValueError):
    """The private key KMS unwrapped is not the pair of the record's public key."""

    def __init__(self, kid: str) -> None:
        super().__init__(
            f"the private key of {kid!r} does not match its public key in the keyset; the record "
            "was edited: restore it from a known-good keyset or expire the key"
        )
        self.kid = kid


def unwrap(kms: Any, record: KeyRecord) -> OpeningKey:
    """One kms:Decrypt, then parse. Blocking: the worker calls the async twin instead."""
    response = kms.decrypt(**decrypt_request(record))
    return load_private_key(record, response["Plaintext"])


def verify_key(kms: Any, record: KeyRecord) -> str | None:
    """`keys verify`: unwrap once through KMS and check the pair; what is wrong, or None."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        unwrap(kms, record)
    except ClientError as exc:
        return f"KMS Decrypt refused: {exc.response.get('Error', {}).get('Code', 'unknown')}"
    except BotoCoreError as exc:
        return f"KMS Decrypt failed: {type(exc).__name__}"
    except (KeyMismatchError, KeyShreddedError) as exc:
        return str(exc)
    except ValueError as exc:  # only the type: never echo key material
        return f"the unwrapped key does not load as its {record.alg.value} key ({type(exc).__name__})"
    return None
