"""JWE compact serialization, narrow profile: ECDH-ES+A256KW or RSA-OAEP-256, with A256GCM.

Written on pyca/cryptography primitives rather than through a JOSE library: the profile is
small, a general library parses and allows far more than we accept, and the hot path (one
open per message) runs several times faster this way. tests/unit/test_crosscheck.py checks
both directions against jwcrypto and joserfc so the hand-written part stays standard.

Concat KDF (RFC 7518 4.6.2) needs one SHA-256 round here because A256KW wants exactly 256
bits, so it is one hashlib call; the tests cross-check it against cryptography's ConcatKDFHash.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import time
from binascii import Error as BinasciiError
from binascii import a2b_base64
from typing import Any, NamedTuple, NoReturn, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from sealq.envelope.b64 import B64_PADDING, URLSAFE_TO_STANDARD, b64url_encode, int_to_b64url
from sealq.envelope.jwk import (
    CURVES,
    ENC,
    KID_PATTERN,
    Alg,
    PrivateKeyObject,
    SealingKey,
    alg_for_key,
    curve_name,
)
from sealq.errors import OpenError, Reason

TYP = "sealq+jwe"
DEFAULT_MAX_TOKEN_BYTES = 1024 * 1024
"""SQS's message size limit; nothing larger can have come through a queue."""
MAX_HEADER_B64 = 2048

OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_ECDH = ec.ECDH()
_COUNTER_1 = struct.pack(">I", 1)
# Header members that would let a token choose its own key, compression or extensions.
_REFUSED_MEMBERS = frozenset({"zip", "crit", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256"})
_ALGS = {a.value: a for a in Alg}
_CURVE_INSTANCES = {name: (cls(), size) for name, (cls, size) in CURVES.items()}
_kid_match = KID_PATTERN.fullmatch
_json_raw_decode = json.JSONDecoder().raw_decode
"""json.loads's own decoder, called without its argument checks and whitespace skipping
(it runs once per message); anything it does not take whole goes through json.loads."""


def _concat_kdf_otherinfo(apu: bytes, apv: bytes) -> bytes:
    alg = Alg.ECDH_ES_A256KW.value.encode("ascii")
    return b"".join(
        (
            struct.pack(">I", len(alg)),
            alg,
            struct.pack(">I", len(apu)),
            apu,
            struct.pack(">I", len(apv)),
            apv,
            struct.pack(">I", 256),
        )
    )


_OTHERINFO_PLAIN = _concat_kdf_otherinfo(b"", b"")


def derive_kek(shared_secret: bytes, apu: bytes = b"", apv: bytes = b"") -> bytes:
    """Concat KDF for ECDH-ES+A256KW: one SHA-256 round gives the 256-bit key-wrapping key."""
    info = _OTHERINFO_PLAIN if not (apu or apv) else _concat_kdf_otherinfo(apu, apv)
    return hashlib.sha256(_COUNTER_1 + shared_secret + info).digest()


class OpeningKey:
    """A parsed private key bound to its kid and its one alg. Refuses to pickle or print."""

    __slots__ = ("_curve", "_key", "alg", "expires_at", "kid")

    def __init__(self, kid: str, key: PrivateKeyObject, expires_at: int | None = None) -> None:
        self.kid = kid
        self.alg = alg_for_key(key)
        self._key = key
        self._curve = curve_name(key) if isinstance(key, ec.EllipticCurvePrivateKey) else None
        self.expires_at = expires_at

    def __reduce__(self) -> NoReturn:
        raise TypeError("OpeningKey holds private key material and cannot be pickled")

    def __repr__(self) -> str:
        return f"OpeningKey(kid={self.kid!r}, alg={self.alg.value!r})"

    @property
    def private_key(self) -> PrivateKeyObject:
        return self._key

    @property
    def curve(self) -> str | None:
        """The JWK curve name for EC keys, None for RSA."""
        return self._curve


class ParsedToken(NamedTuple):
    """A token whose structure and header passed every check that needs no key.

    A NamedTuple rather than a frozen dataclass: it is built once per message and the
    tuple constructor is several times cheaper.
    """

    kid: str
    alg: Alg
    iat: int | None
    aad: bytes
    epk: ec.EllipticCurvePublicKey | None
    epk_curve: str | None
    apu: bytes
    apv: bytes
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes
    tag: bytes


def _fail(reason: Reason) -> NoReturn:
    raise OpenError(reason)


def _decode(part: bytes) -> bytes:
    """b64url_decode raising OpenError; inlined rather than wrapped, it runs 7x per message."""
    try:
        return a2b_base64(part.translate(URLSAFE_TO_STANDARD) + B64_PADDING[len(part) % 4], strict_mode=True)
    except BinasciiError:
        _fail(Reason.MALFORMED)


def _parse_epk(epk: Any) -> tuple[ec.EllipticCurvePublicKey, str]:
    if type(epk) is not dict or epk.get("kty") != "EC" or "d" in epk:
        _fail(Reason.MALFORMED)
    crv, x, y = epk.get("crv"), epk.get("x"), epk.get("y")
    spec = _CURVE_INSTANCES.get(crv) if type(crv) is str else None
    if spec is None or type(x) is not str or type(y) is not str:
        _fail(Reason.MALFORMED)
    curve, size = spec
    xb, yb = _decode(x.encode()), _decode(y.encode())
    if len(xb) != size or len(yb) != size:
        _fail(Reason.MALFORMED)
    try:
        # from_encoded_point rejects points that are not on the curve (invalid-curve attacks).
        point = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + xb + yb)
    except ValueError:
        _fail(Reason.MALFORMED)
    return point, crv  # type: ignore[return-value]


def _read_header(raw: bytes) -> Any:
    """json.loads(raw), faster for the usual header. json.loads(bytes) first guesses the
    encoding (BOMs, NUL bytes): one starting `{` with no NUL next is UTF-8 to it, decoded
    the same way here without the guess; and one that is a JSON value with nothing around
    it needs no whitespace skipping. Everything else (and every error) is json.loads's."""
    if raw[:1] == b"{" and raw[1:2] != b"\x00":
        text = raw.decode("utf-8", "surrogatepass")
        try:
            value, end = _json_raw_decode(text)
        except ValueError:
            value, end = None, -1
        if end == len(text):
            return value
    return json.loads(raw)


def _party_info(value: Any) -> bytes:
    """`apu` / `apv`: absent, or a base64url string."""
    if value is None:
        return b""
    if type(value) is not str:
        _fail(Reason.MALFORMED)
    return _decode(value.encode())


def parse(token: bytes | str, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> ParsedToken:
    """Check structure and header of a compact JWE without any key. Raises OpenError."""
    if isinstance(token, str):
        if len(token) > max_bytes:
            _fail(Reason.TOO_LARGE)
        try:
            token = token.encode("ascii")
        except UnicodeEncodeError:
            _fail(Reason.MALFORMED)
    elif len(token) > max_bytes:
        _fail(Reason.TOO_LARGE)
    if token.count(b".") != 4:  # counted first: splitting a body of separators is costly
        _fail(Reason.MALFORMED)
    parts = token.split(b".")
    header_b64, ek_b64, iv_b64, ct_b64, tag_b64 = parts
    if len(header_b64) > MAX_HEADER_B64:
        _fail(Reason.MALFORMED)
    raw_header = _decode(header_b64)
    try:
        header = _read_header(raw_header)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        _fail(Reason.MALFORMED)
    if type(header) is not dict:
        _fail(Reason.MALFORMED)
    alg_name = header.get("alg")
    alg = _ALGS.get(alg_name) if type(alg_name) is str else None
    if alg is None or header.get("enc") != ENC or not _REFUSED_MEMBERS.isdisjoint(header):
        _fail(Reason.UNSUPPORTED_ALGORITHM)
    kid = header.get("kid")
    if type(kid) is not str or _kid_match(kid) is None:
        _fail(Reason.MALFORMED)
    iat = header.get("iat")
    if iat is not None:
        # json.loads accepts NaN, Infinity and 1e400: refuse anything that is not a plain,
        # finite number of seconds (int() would raise on those, outside the opaque error).
        if type(iat) is float and math.isfinite(iat):
            iat = int(iat)
        elif type(iat) is not int:
            _fail(Reason.MALFORMED)
    epk = epk_curve = None
    apu = apv = b""
    if alg is Alg.ECDH_ES_A256KW:
        epk, epk_curve = _parse_epk(header.get("epk"))
        if "apu" in header or "apv" in header:  # sealq's producer sets neither
            apu, apv = _party_info(header.get("apu")), _party_info(header.get("apv"))
    elif "epk" in header:
        _fail(Reason.MALFORMED)
    iv, tag = _decode(iv_b64), _decode(tag_b64)
    if len(iv) != 12 or len(tag) != 16:
        _fail(Reason.MALFORMED)
    # Positional, in field order: keyword binding costs a measurable share of a message.
    return ParsedToken(
        kid, alg, iat, header_b64, epk, epk_curve, apu, apv, _decode(ek_b64), iv, _decode(ct_b64), tag
    )


def decrypt(parsed: ParsedToken, key: OpeningKey) -> bytes:
    """Unwrap the content key with `key` and authenticate-then-decrypt. Raises OpenError."""
    if parsed.alg is not key.alg:
        _fail(Reason.UNSUPPORTED_ALGORITHM)
    if key._curve is not None:  # EC; a plain attribute test beats an ABC isinstance here
        private = cast(ec.EllipticCurvePrivateKey, key._key)
        if parsed.epk is None or parsed.epk_curve != key._curve:
            _fail(Reason.UNSUPPORTED_ALGORITHM)
        if len(parsed.encrypted_key) != 40:
            _fail(Reason.DECRYPT_FAILED)
        kek = derive_kek(private.exchange(_ECDH, parsed.epk), parsed.apu, parsed.apv)
        try:
            cek = aes_key_unwrap(kek, parsed.encrypted_key)
        except InvalidUnwrap:
            _fail(Reason.DECRYPT_FAILED)
    else:
        rsa_key = cast(rsa.RSAPrivateKey, key._key)
        if len(parsed.encrypted_key) != rsa_key.key_size // 8:
            _fail(Reason.DECRYPT_FAILED)
        try:
            cek = rsa_key.decrypt(parsed.encrypted_key, OAEP_SHA256)
        except ValueError:
            _fail(Reason.DECRYPT_FAILED)
    if len(cek) != 32:
        _fail(Reason.DECRYPT_FAILED)
    try:
        return AESGCM(cek).decrypt(parsed.iv, parsed.ciphertext + parsed.tag, parsed.aad)
    except InvalidTag:
        _fail(Reason.DECRYPT_FAILED)


def open_token(token: bytes | str, key: OpeningKey, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> bytes:
    """Parse and decrypt in one step, checking that the token names `key`."""
    parsed = parse(token, max_bytes)
    if parsed.kid != key.kid:
        _fail(Reason.KID_MISMATCH)
    return decrypt(parsed, key)


def _header_bytes(header: dict[str, Any]) -> bytes:
    return b64url_encode(json.dumps(header, separators=(",", ":")).encode("ascii"))


def seal_at(plaintext: bytes, key: SealingKey, now: float) -> bytes:
    """Seal `plaintext` to `key` as it would be sealed at time `now` (sets `iat`)."""
    header: dict[str, Any] = {
        "alg": key.alg.value,
        "enc": ENC,
        "kid": key.kid,
        "typ": TYP,
        "iat": int(now),
    }
    cek = AESGCM.generate_key(256)
    public = key.key
    if isinstance(public, ec.EllipticCurvePublicKey):
        crv = curve_name(public)
        size = CURVES[crv][1]
        ephemeral = ec.generate_private_key(public.curve)
        nums = ephemeral.public_key().public_numbers()
        header["epk"] = {
            "kty": "EC",
            "crv": crv,
            "x": int_to_b64url(nums.x, size),
            "y": int_to_b64url(nums.y, size),
        }
        encrypted_key = aes_key_wrap(derive_kek(ephemeral.exchange(_ECDH, public)), cek)
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        encrypted_key = public.encrypt(cek, OAEP_SHA256)
    aad = _header_bytes(header)
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, aad)
    return b".".join(
        (
            aad,
            b64url_encode(encrypted_key),
            b64url_encode(iv),
            b64url_encode(sealed[:-16]),
            b64url_encode(sealed[-16:]),
        )
    )


def seal(plaintext: bytes, key: SealingKey) -> bytes:
    return seal_at(plaintext, key, time.time())
