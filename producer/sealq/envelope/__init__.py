"""sealq's wire format: a narrow JWE profile (RFC 7516/7518) and the seed's raw RSA-OAEP mode.

Sealing and opening, public keys as JWKs, strict base64url. Imports nothing else of sealq but
the dependency-free error tree (`sealq.errors`), so any client or tool can depend on it alone.
"""

from sealq.envelope.attributes import (
    ATTR_CLIENT_ID,
    ATTR_CONTENT_TYPE,
    ATTR_DETAIL,
    ATTR_FORMAT,
    ATTR_KEY_ID,
    ATTR_REASON,
)
from sealq.envelope.jwe import (
    DEFAULT_MAX_TOKEN_BYTES,
    TYP,
    OpeningKey,
    ParsedToken,
    decrypt,
    open_token,
    parse,
    seal,
    seal_at,
)
from sealq.envelope.jwk import (
    ENC,
    KID_PATTERN,
    Alg,
    SealingKey,
    alg_for_key,
    jwk_to_sealing_key,
    public_key_to_jwk,
    validate_kid,
)
from sealq.envelope.raw import RAW_FORMAT, max_plaintext, open_raw, seal_raw
from sealq.errors import OpenError, Reason

__all__ = [
    "ATTR_CLIENT_ID",
    "ATTR_CONTENT_TYPE",
    "ATTR_DETAIL",
    "ATTR_FORMAT",
    "ATTR_KEY_ID",
    "ATTR_REASON",
    "DEFAULT_MAX_TOKEN_BYTES",
    "ENC",
    "KID_PATTERN",
    "RAW_FORMAT",
    "TYP",
    "Alg",
    "OpenError",
    "OpeningKey",
    "ParsedToken",
    "Reason",
    "SealingKey",
    "alg_for_key",
    "decrypt",
    "jwk_to_sealing_key",
    "max_plaintext",
    "open_raw",
    "open_token",
    "parse",
    "public_key_to_jwk",
    "seal",
    "seal_at",
    "seal_raw",
    "validate_kid",
]
