"""Strict base64url: what the one-pass decoder (`b64url_decode`, and jwe's inlined copy)
refuses and what it agrees with the stdlib on."""

from __future__ import annotations

import base64
import json
import os

import pytest

from sealq.envelope.b64 import b64url_decode, b64url_encode
from sealq.envelope.jwe import parse, seal
from sealq.errors import OpenError, Reason
from tests.conftest import KeyPair

REFUSED = [
    b"QUJD+A",
    b"QUJD/A",
    b"QUJDRA==",
    b"QUJDRA=",
    b"QQ=A",
    b"QUJDR",
    b"Q",
    b"QU JD",
    b"QUJD\n",
    b"QU!D",
]


@pytest.mark.parametrize("data", REFUSED)
def test_refuses_standard_alphabet_padding_bad_length_and_other_bytes(data: bytes) -> None:
    with pytest.raises(ValueError, match="not base64url"):
        b64url_decode(data)


@pytest.mark.parametrize("data", REFUSED)
@pytest.mark.parametrize("part", [1, 2, 3, 4])
def test_parse_refuses_them_in_every_part(keypairs: dict[str, KeyPair], data: bytes, part: int) -> None:
    parts = seal(b"payload", keypairs["P-256"].sealing).split(b".")
    parts[part] = data
    with pytest.raises(OpenError) as caught:
        parse(b".".join(parts))
    assert caught.value.reason is Reason.MALFORMED


def test_agrees_with_the_stdlib_on_every_length() -> None:
    for size in range(0, 70):
        raw = os.urandom(size)
        encoded = b64url_encode(raw)
        assert b64url_decode(encoded) == base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4)) == raw


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
def test_header_encodings_read_as_json_loads_reads_them(keypairs: dict[str, KeyPair], encoding: str) -> None:
    """parse skips json.loads's encoding guess for a plain UTF-8 header: the others still go
    through it, so which headers parse is unchanged."""
    token = seal(b"payload", keypairs["P-256"].sealing)
    header = base64.urlsafe_b64decode(token.split(b".")[0] + b"==").decode()
    recoded = b64url_encode(header.encode(encoding))
    parsed = parse(b".".join([recoded, *token.split(b".")[1:]]))
    assert parsed.kid == keypairs["P-256"].kid and parsed.aad == recoded


HEADERS = [b' {"kid":"k"}', b'{"kid":"k"} ', b'{"kid":"k"}x', b'{"kid":', b"{\xff}", b"{}"]


@pytest.mark.parametrize("raw", HEADERS)
def test_header_json_reads_as_json_loads_reads_it(raw: bytes) -> None:
    from sealq.envelope.jwe import _read_header

    try:
        expected = json.loads(raw)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            _read_header(raw)
    else:
        assert _read_header(raw) == expected
