"""Creating key pairs through KMS and unwrapping their private keys.

KMS `GenerateDataKeyPairWithoutPlaintext` means the private key never exists in plain outside
KMS until a worker allowed to call kms:Decrypt unwraps it in memory. The EncryptionContext
binds the blob to its kid and expiry and, for new keys, its alg and public key (moved there
by KMS ReEncrypt, sealq.keys.context), so a keyset edited to extend a key's life or to hand
clients another public key cannot be unwrapped.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealq.envelope.jwe import OpeningKey
from sealq.envelope.jwk import PublicKeyObject, alg_for_key
from sealq.errors import SealqError
from sealq.keys.context import BOUND, LEGACY, bound_context, legacy_context
from sealq.keys.keyset import KeyRecord, KeySpec, KeyState, new_kid

REENCRYPT_UNSUPPORTED = frozenset({"InvalidAction", "UnknownOperationException"})
"""What a KMS without ReEncrypt answers: ministack 1.5.33 says `InvalidAction` ("Unknown
action: ReEncrypt", HTTP 400, AWS's query-protocol code); `UnknownOperationException` is the
JSON-protocol spelling. Only these fall back to an unbound record; AWS always has ReEncrypt."""

REENCRYPT_PERMISSIONS = "kms:ReEncryptFrom and kms:ReEncryptTo"


class KeyBindingError(SealqError):
    """KMS ReEncrypt, which binds a new key's public key and alg, failed: no key was written."""

    def __init__(self, kid: str, cmk: str, code: str) -> None:
        if code == "AccessDeniedException":
            advice = (
                f"grant {REENCRYPT_PERMISSIONS} on CMK {cmk!r} to the identity running `keys create` "
                "(besides kms:GenerateDataKeyPairWithoutPlaintext), then create the key again"
            )
        else:
            advice = "check the CMK and try again"
        super().__init__(f"KMS ReEncrypt of new key {kid!r} failed ({code}); no key was written: {advice}")
        self.kid = kid
        self.code = code


def _default_warn(line: str) -> None:
    logging.getLogger("sealq.keys").warning(line)


def create_key(
    kms: Any,
    *,
    cmk: str,
    spec: KeySpec,
    lifetime: timedelta,
    now: datetime,
    not_before: datetime | None = None,
    warn: Callable[[str], None] = _default_warn,
) -> KeyRecord:
    """Generate a wrapped key pair under `cmk` (key id, ARN or alias), bound to its public key
    and alg (context 2, see sealq.keys.context). A KMS without ReEncrypt (an emulator) gets a
    legacy record and one `warn` line saying so. Raises KeyBindingError, AwsError."""
    from botocore.exceptions import BotoCoreError, ClientError

    kid = new_kid(spec, now)
    start = (not_before or now).replace(microsecond=0)
    expires_at = (start + lifetime).replace(microsecond=0)
    legacy = legacy_context(kid, expires_at)
    response = kms.generate_data_key_pair_without_plaintext(
        KeyId=cmk, KeyPairSpec=spec.value, EncryptionContext=legacy
    )
    public_der: bytes = response["PublicKey"]
    public = serialization.load_der_public_key(public_der)
    if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ValueError(f"KMS returned an unexpected key type for {spec}")
    alg_for_key(public)  # refuses a key outside the profile
    arn = str(response.get("KeyId") or cmk)
    blob: bytes = response["PrivateKeyCiphertextBlob"]
    version = BOUND
    try:
        blob = kms.re_encrypt(
            CiphertextBlob=blob,
            SourceEncryptionContext=legacy,
            SourceKeyId=arn,
            DestinationKeyId=arn,
            DestinationEncryptionContext=bound_context(kid, expires_at, spec.alg.value, public_der),
        )["CiphertextBlob"]
    except BotoCoreError as exc:  # unreachable, timed out: nothing was written, try again
        raise KeyBindingError(kid, arn, type(exc).__name__) from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "unknown"))
        if code not in REENCRYPT_UNSUPPORTED:
            raise KeyBindingError(kid, arn, code) from None
        version = LEGACY
        warn(
            f"key {kid} is NOT bound to its public key and alg: this KMS does not support ReEncrypt "
            f"({code}), so it is wrapped under the legacy context (kid and expiry only); AWS KMS "
            "always binds it"
        )
    return KeyRecord(
        kid=kid,
        key_spec=spec,
        alg=spec.alg,
        cmk_arn=arn,
        public_key=base64.b64encode(public_der).decode("ascii"),
        wrapped_private_key=base64.b64encode(blob).decode("ascii"),
        created_at=now,
        not_before=start,
        expires_at=expires_at,
        state=KeyState.ACTIVE,
        context=version,
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
        code = str(exc.response.get("Error", {}).get("Code", "unknown"))
        if code != "InvalidCiphertextException":
            return f"KMS Decrypt refused: {code}"
        bound = "kid, expiry, alg or public key" if record.bound else "kid or expiry"
        return (
            f"KMS Decrypt refused: {code}: the record's {bound} (or its context version) is not "
            "what the key was wrapped with; the record was edited: restore it or expire the key"
        )
    except BotoCoreError as exc:
        return f"KMS Decrypt failed: {type(exc).__name__}"
    except (KeyMismatchError, KeyShreddedError) as exc:
        return str(exc)
    except ValueError as exc:  # only the type: never echo key material
        return f"the unwrapped key does not load as its {record.alg.value} key ({type(exc).__name__})"
    return None
