"""The keyset document: every key pair sealq made, its wrapped private key and its lifetime.

Pure data and rules, no I/O: `keystore` reads and writes it, `kms_keys` fills it. A record's
private key is only ever the KMS-wrapped blob; expiring a record erases even that.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from sealq.envelope.jwk import (
    Alg,
    PublicKeyObject,
    SealingKey,
    alg_for_key,
    curve_name,
    public_key_to_jwk,
    validate_kid,
)
from sealq.errors import SealqError
from sealq.keys.context import LEGACY, ContextVersion, encryption_context
from sealq.keys.context import iso as iso  # re-exported: callers format key times with it

KEYSET_FORMAT = "sealq-keyset/1"


class KeySpec(StrEnum):
    """KMS KeyPairSpec values sealq accepts (SM2 and secp256k1 are not JOSE algorithms)."""

    ECC_NIST_P256 = "ECC_NIST_P256"
    ECC_NIST_P384 = "ECC_NIST_P384"
    ECC_NIST_P521 = "ECC_NIST_P521"
    RSA_2048 = "RSA_2048"
    RSA_3072 = "RSA_3072"
    RSA_4096 = "RSA_4096"

    @property
    def alg(self) -> Alg:
        return Alg.ECDH_ES_A256KW if self.value.startswith("ECC") else Alg.RSA_OAEP_256

    @property
    def short(self) -> str:
        """Used in generated kids: p256, p384, p521, rsa2048, rsa3072, rsa4096."""
        size = self.value.rsplit("_", 1)[1]
        return f"rsa{size}" if self.value.startswith("RSA") else size.lower()


class KeyState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"


def to_epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


def new_kid(spec: KeySpec, now: datetime) -> str:
    """Readable and unique: spec, creation day, 32 random bits (e.g. p256-20261129-9f3a1c2e)."""
    return f"{spec.short}-{now.strftime('%Y%m%d')}-{secrets.token_hex(4)}"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone (use ...Z)")
    return value.astimezone(UTC)


class KeyRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kid: str
    key_spec: KeySpec
    alg: Alg
    cmk_arn: str
    public_key: str = Field(description="base64 DER SubjectPublicKeyInfo, as KMS returns it")
    wrapped_private_key: str | None = Field(
        default=None, description="base64 PrivateKeyCiphertextBlob; erased on expiry"
    )
    created_at: datetime
    not_before: datetime
    expires_at: datetime
    state: KeyState = KeyState.ACTIVE
    shredded_at: datetime | None = None
    context: ContextVersion = Field(
        default=LEGACY,
        description="which EncryptionContext the private key is wrapped under (sealq.keys.context); "
        "absent means 1, the legacy kid-and-expiry context",
    )

    @field_validator("kid")
    @classmethod
    def _kid(cls, value: str) -> str:
        return validate_kid(value)

    @field_validator("not_before", "expires_at", "shredded_at")
    @classmethod
    def _utc_seconds(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return _utc(value).replace(microsecond=0)

    @field_validator("created_at")
    @classmethod
    def _utc_precise(cls, value: datetime) -> datetime:
        """Kept to the microsecond: it orders keys made within the same second (a rotate
        right after a create), where not-before and expiry tie."""
        return _utc(value)

    @model_validator(mode="after")
    def _alg_fits_spec(self) -> KeyRecord:
        """A key pair of one spec can only open one alg: a record saying otherwise could
        never open a message (and would cost a KMS Decrypt on every try)."""
        if self.alg is not self.key_spec.alg:
            raise ValueError(
                f"key {self.kid!r} has alg {self.alg.value} but its key_spec {self.key_spec.value} "
                f"takes {self.key_spec.alg.value}; fix the record's alg"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_legacy_context(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A legacy record is written without `context`, as before: a keyset holding only
        such keys stays readable by a worker that predates the field."""
        data: dict[str, Any] = handler(self)
        if self.context == LEGACY:
            data.pop("context", None)
        return data

    @property
    def bound(self) -> bool:
        """Whether KMS binds the public key and alg too (context 2), not only kid and expiry."""
        return self.context != LEGACY

    def encryption_context(self) -> dict[str, str]:
        """Bound into the wrapped key by KMS: editing what it holds (kid and expiry; for a
        context-2 record also the alg and public key) makes Decrypt refuse."""
        return encryption_context(
            self.context, self.kid, self.expires_at, self.alg.value, base64.b64decode(self.public_key)
        )

    def status(self, now: datetime) -> str:
        """`expired` once shredded or past expiry, `pending` before not-before, else `active`."""
        if self.state is KeyState.EXPIRED or now >= self.expires_at:
            return "expired"
        if now < self.not_before:
            return "pending"
        return "active"

    def public_key_object(self) -> PublicKeyObject:
        key = serialization.load_der_public_key(base64.b64decode(self.public_key))
        assert not isinstance(key, bytes)
        return key  # type: ignore[return-value]

    def public_pem(self) -> str:
        return (
            self.public_key_object()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )

    def sealing_key(self) -> SealingKey:
        return SealingKey(
            self.kid,
            self.alg,
            self.public_key_object(),
            to_epoch(self.not_before),
            to_epoch(self.expires_at),
        )

    def jwk(self) -> dict[str, Any]:
        return public_key_to_jwk(
            self.public_key_object(),
            self.kid,
            not_before=to_epoch(self.not_before),
            expires_at=to_epoch(self.expires_at),
        )

    def shredded(self, now: datetime) -> KeyRecord:
        return self.model_copy(
            update={
                "wrapped_private_key": None,
                "state": KeyState.EXPIRED,
                "shredded_at": _utc(now).replace(microsecond=0),
            }
        )


def public_key_problem(record: KeyRecord) -> str | None:
    """What is wrong with a record's public key (it does not parse, or is not of its key
    spec and alg), or None: the cheap checks before clients are told to seal to it."""
    try:
        validate_kid(record.kid)
        key = record.public_key_object()
        alg = alg_for_key(key)
        size = curve_name(key) if isinstance(key, ec.EllipticCurvePublicKey) else f"RSA_{key.key_size}"
    except Exception as exc:  # only the type: never echo what the record holds
        return f"key {record.kid[:64]!r} has a public key that does not parse ({type(exc).__name__})"
    expected = record.key_spec.value.replace("ECC_NIST_P", "P-")
    if alg is not record.alg or size != expected:
        return (
            f"key {record.kid!r} has a {size} public key but says {record.key_spec.value} "
            f"({record.alg.value}); the record was edited: restore it or expire the key"
        )
    return None


def parse_cmk_list(text: str) -> frozenset[str]:
    """`--allowed-cmk-arns`: comma-separated CMK ARNs; empty allows any CMK."""
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def cmk_refusal(record: KeyRecord, allowed: frozenset[str]) -> str | None:
    """Why `record` may not be used under an allowed-CMK list, or None when it may. A keyset
    edited to point a key at another CMK (with that CMK's key pair) would otherwise open."""
    if not allowed or record.cmk_arn in allowed:
        return None
    return (
        f"key {record.kid!r} is wrapped by CMK {record.cmk_arn!r}, which is not in "
        "--allowed-cmk-arns / SEALQ_ALLOWED_CMK_ARNS; add that CMK's ARN or fix the keyset"
    )


def refuse_foreign_cmks(records: list[KeyRecord], allowed_text: str) -> None:
    """For the `keys` commands: a SealqError naming the first record on a CMK not allowed."""
    allowed = parse_cmk_list(allowed_text)
    for record in records:
        refusal = cmk_refusal(record, allowed)
        if refusal is not None:
            raise SealqError(refusal)


class UnknownKidError(SealqError, LookupError):
    """No key with this kid in the keyset (a typo, or a keyset from another environment)."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"no key {kid!r} in the keyset; `sealq keys list` shows the kids")
        self.kid = kid


class Keyset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = KEYSET_FORMAT
    keys: list[KeyRecord] = Field(default_factory=list)

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value != KEYSET_FORMAT:
            raise ValueError(f"unsupported keyset format {value!r}; expected {KEYSET_FORMAT!r}")
        return value

    def __iter__(self) -> Iterator[KeyRecord]:  # type: ignore[override]
        return iter(self.keys)

    def get(self, kid: str) -> KeyRecord:
        for record in self.keys:
            if record.kid == kid:
                return record
        raise UnknownKidError(kid)

    def with_record(self, record: KeyRecord) -> Keyset:
        """A copy with `record` added, or replacing the record of the same kid."""
        keys = [r for r in self.keys if r.kid != record.kid]
        keys.append(record)
        keys.sort(key=lambda r: (r.not_before, r.created_at))
        return Keyset(keys=keys)

    def current(self, now: datetime) -> KeyRecord | None:
        """The key producers should use: the active one with the latest not-before."""
        active = [r for r in self.keys if r.status(now) == "active"]
        return max(active, key=lambda r: (r.not_before, r.created_at), default=None)

    def jwks(self, now: datetime) -> dict[str, Any]:
        """The public view: every key not yet expired (pending ones too, so clients can
        pick them up before they start), newest first. Carries no secrets by construction."""
        live = [r for r in self.keys if r.status(now) != "expired"]
        live.sort(key=lambda r: (r.not_before, r.created_at), reverse=True)
        return {"keys": [r.jwk() for r in live]}
