"""Deciding, before any KMS call or decryption, what a received message is.

Pure: given the message, the current key index and the time, say whether to open it (and
with which key), dead-letter it (and why), or look for a newer keyset first. Everything that
does not need the private key is settled here, so bad messages never cost a KMS call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from sealq.aws.payloads import S3Pointer, is_offloaded, parse_pointer
from sealq.envelope.attributes import ATTR_FORMAT, ATTR_KEY_ID
from sealq.envelope.jwe import DEFAULT_MAX_TOKEN_BYTES, ParsedToken, parse
from sealq.envelope.jwk import KID_PATTERN, Alg
from sealq.envelope.raw import RAW_FORMAT
from sealq.errors import OpenError, Reason
from sealq.keys.keyset import KeyRecord, Keyset, KeyState


@dataclass(frozen=True, slots=True)
class KeyEntry:
    record: KeyRecord
    expires_at: float
    shredded: bool


class KeyIndex:
    """The keyset as the hot path needs it: kid -> record and expiry as epoch seconds."""

    __slots__ = ("_entries",)

    def __init__(self, keyset: Keyset) -> None:
        self._entries = {
            r.kid: KeyEntry(
                r,
                r.expires_at.timestamp(),
                r.state is KeyState.EXPIRED or r.wrapped_private_key is None,
            )
            for r in keyset
        }

    def get(self, kid: str) -> KeyEntry | None:
        return self._entries.get(kid)

    def __len__(self) -> int:
        return len(self._entries)

    def kids(self) -> frozenset[str]:
        return frozenset(self._entries)


class Open(NamedTuple):
    entry: KeyEntry
    parsed: ParsedToken | None  # None: seed raw mode, the body is opened as is


class Reject(NamedTuple):
    reason: Reason
    detail: str


class UnknownKid(NamedTuple):
    kid: str


class Fetch(NamedTuple):
    """Sent through S3: fetch the token, then classify it (`fetched=True`)."""

    pointer: S3Pointer


Verdict = Open | Reject | UnknownKid | Fetch


def key_usable(entry: KeyEntry, iat: int | None, now: float, grace_s: float) -> bool:
    """A key opens messages until it expires; a message whose authenticated `iat` is before
    expiry still opens for `grace_s` after it (sealed in time, delivered late)."""
    if entry.shredded:
        return False
    if now < entry.expires_at:
        return True
    return iat is not None and iat < entry.expires_at and now < entry.expires_at + grace_s


def classify(
    body: str,
    attributes: Mapping[str, str],
    keys: KeyIndex,
    now: float,
    grace_s: float,
    max_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
    *,
    fetched: bool = False,
) -> Verdict:
    """`body` is the SQS body, or with `fetched` the token an S3 pointer led to."""
    attr_kid = attributes.get(ATTR_KEY_ID)
    if attr_kid is None:
        return Reject(Reason.MALFORMED, "no key-id attribute")
    if KID_PATTERN.fullmatch(attr_kid) is None:
        return Reject(Reason.MALFORMED, "key-id attribute is not a valid kid")
    if not fetched and is_offloaded(attributes):
        # Known kid first: a pointer under a kid we cannot open costs no S3 request.
        pointer = parse_pointer(body)
        if isinstance(pointer, str):
            return Reject(Reason.MALFORMED, pointer)
        return Fetch(pointer) if keys.get(attr_kid) is not None else UnknownKid(attr_kid)
    fmt = attributes.get(ATTR_FORMAT)
    parsed: ParsedToken | None = None
    iat: int | None = None
    if fmt is None:
        try:
            parsed = parse(body, max_bytes)
        except OpenError as exc:
            return Reject(exc.reason, "")
        if parsed.kid != attr_kid:
            return Reject(Reason.KID_MISMATCH, "key-id attribute differs from the header kid")
        iat = parsed.iat
    elif fmt != RAW_FORMAT:
        return Reject(Reason.MALFORMED, f"unknown sealq-format (expected {RAW_FORMAT})")
    elif len(body) > max_bytes:
        return Reject(Reason.TOO_LARGE, "")
    entry = keys.get(attr_kid)
    if entry is None:
        return UnknownKid(attr_kid)
    if not key_usable(entry, iat, now, grace_s):
        return Reject(Reason.KEY_EXPIRED, "")
    if parsed is not None and parsed.alg is not entry.record.alg:
        # Settled here, before the key is unwrapped: a wrong alg costs no KMS call.
        return Reject(Reason.UNSUPPORTED_ALGORITHM, "alg differs from the key's")
    if fmt is not None and entry.record.alg is not Alg.RSA_OAEP_256:
        return Reject(Reason.UNSUPPORTED_ALGORITHM, "raw mode needs an RSA key")
    return Open(entry, parsed)
