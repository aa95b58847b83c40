"""Throwaway key pairs for tests: seal to them like a producer, open them like a worker.

A `TestKey` keeps its private key in memory only. The worker gets it the way it gets a real
one, through a keyset record whose wrapped key only a `FakeKMS` can unwrap, so no private key
is ever written to disk.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealq.envelope.jwk import PrivateKeyObject, SealingKey, alg_for_key, public_key_to_jwk, validate_kid
from sealq.keys.keyset import KeyRecord
from sealq.producer.message import Body, Entry, OutgoingMessage, build_entry
from sealq.testing.kms import FakeKMS, record_for

KeyKind = Literal["P-256", "P-384", "P-521", "RSA-2048", "RSA-3072", "RSA-4096"]

_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


class TestKey:
    """A fresh key pair of `kind` (P-256 by default, as `sealq keys create`) named `kid`.

    `sealing_key` and `jwks()` are what producer tests need; `seal()` builds the exact SQS
    entry a `Producer` would send; `record()` is the keyset record a worker test needs.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, kind: KeyKind = "P-256", kid: str = "test-key", *, expires_in_s: float = 3600) -> None:
        self.kind = kind
        self.kid = validate_kid(kid)
        self.expires_in_s = expires_in_s
        self._private: PrivateKeyObject = (
            ec.generate_private_key(_CURVES[kind])
            if kind in _CURVES
            else rsa.generate_private_key(65537, int(kind.removeprefix("RSA-")))
        )

    def __repr__(self) -> str:  # never the key material
        return f"TestKey({self.kind!r}, kid={self.kid!r})"

    def __reduce__(self) -> Any:
        raise TypeError("TestKey holds a private key and cannot be pickled")

    @property
    def sealing_key(self) -> SealingKey:
        """The public half, as a producer holds it (no validity window: always usable)."""
        public = self._private.public_key()
        return SealingKey(self.kid, alg_for_key(public), public)

    def record(self, kms: FakeKMS, *, now: datetime | None = None) -> KeyRecord:
        """This key's keyset record, its private half wrapped by (and only inside) `kms`."""
        return record_for(kms, self._private, self.kid, expires_in_s=self.expires_in_s, now=now)

    def jwks(self) -> dict[str, Any]:
        """A published JWKS holding just this key, valid from 10 s ago for `expires_in_s`,
        as `sealq keys publish` writes it."""
        now = int(time.time())
        jwk = public_key_to_jwk(
            self._private.public_key(), self.kid, not_before=now - 10, expires_at=now + int(self.expires_in_s)
        )
        return {"keys": [jwk]}

    def seal(
        self,
        payload: Body,
        *,
        client_id: str | None = None,
        content_type: str | None = None,
        attributes: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> Entry:
        """Seal `payload` (bytes, str or a pydantic model) to this key: the body and SQS
        attributes a Producer would send."""
        message = OutgoingMessage(payload, client_id, content_type, dict(attributes or {}))
        return build_entry(0, message, self.sealing_key, time.time() if now is None else now)
