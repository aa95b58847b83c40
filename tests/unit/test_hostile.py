"""Hostile tokens: every one gives the single opaque OpenError with the right reason, and
random corruption never lets any other exception escape."""

from __future__ import annotations

import json
import os
import random
import re
from typing import Any

import pytest

from sealq.envelope.b64 import b64url_decode, b64url_encode
from sealq.envelope.jwe import OAEP_SHA256, open_token, seal
from sealq.errors import OpenError, Reason
from tests.conftest import KeyPair, vector_params

MAX_BYTES = 64 * 1024


def _header(token: bytes) -> dict[str, Any]:
    return dict(json.loads(b64url_decode(token.split(b".")[0])))


def _with_header(token: bytes, header: dict[str, Any] | bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return b".".join([b64url_encode(raw), *token.split(b".")[1:]])


def _short_cek_token(pair: KeyPair) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = b64url_encode(
        json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": pair.kid}).encode()
    )
    cek, iv = os.urandom(16), os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, b"payload", header)
    ek = pair.public.encrypt(cek, OAEP_SHA256)  # type: ignore[union-attr]
    parts = [header, *(b64url_encode(p) for p in (ek, iv, sealed[:-16], sealed[-16:]))]
    return b".".join(parts)


def mutate(
    op: dict[str, Any], token: bytes, pairs: dict[str, KeyPair], base: KeyPair
) -> bytes | str:
    parts = token.split(b".")
    ((name, arg),) = op.items()
    if name == "literal":
        return str(arg)
    if name == "drop_last":
        return b".".join(parts[:-1])
    if name == "append_part":
        return token + b"." + arg.encode()
    if name == "truncate_part":
        index, keep = arg
        parts[index] = parts[index][:keep]
        return b".".join(parts)
    if name == "swap":
        i, j = arg
        parts[i], parts[j] = parts[j], parts[i]
        return b".".join(parts)
    if name == "replace_part":
        index, value = arg
        parts[index] = value.encode()
        return b".".join(parts)
    if name == "raw_header":
        return _with_header(token, arg.encode())
    if name == "raw_header_iat":  # a JSON number Python reads but that is no time (NaN, ...)
        raw = b64url_decode(parts[0]).decode()
        return _with_header(token, re.sub(r'"iat":\s*\d+', f'"iat":{arg}', raw).encode())
    if name == "raw_header_hex":
        return _with_header(token, bytes.fromhex(arg))
    if name in {"set", "delete", "set_epk", "epk_off_curve", "copy_epk_from_ec"}:
        header = _header(token)
        if name == "set":
            header.update(arg)
        elif name == "delete":
            for key in arg:
                header.pop(key, None)
        elif name == "set_epk":
            header["epk"] = {**header["epk"], **arg}
        elif name == "epk_off_curve":
            y = bytearray(b64url_decode(header["epk"]["y"].encode()))
            y[-1] ^= 1
            header["epk"] = {**header["epk"], "y": b64url_encode(bytes(y)).decode()}
        else:
            header["epk"] = _header(seal(b"x", pairs["P-256"].sealing))["epk"]
        return _with_header(token, header)
    if name == "flip":
        raw = bytearray(b64url_decode(parts[arg]))
        raw[len(raw) // 2] ^= 0x01
        parts[arg] = b64url_encode(bytes(raw))
        return b".".join(parts)
    if name == "short_cek":
        return _short_cek_token(base)
    if name == "swap_header":
        other = seal(b"another message", base.sealing)
        return b".".join([other.split(b".")[0], *parts[1:]])
    if name == "oversize":
        return seal(b"z" * MAX_BYTES, base.sealing)
    if name == "prefix_text":
        return arg + token.decode()
    if name == "prefix_hex":
        return bytes.fromhex(arg) + token
    raise AssertionError(f"unknown op {name}")


def _pairs(keypairs: dict[str, KeyPair]) -> dict[str, KeyPair]:
    return {"ec": keypairs["P-256"], "rsa": keypairs["RSA-2048"], "ec384": keypairs["P-384"]}


@pytest.mark.parametrize("case", vector_params("hostile.json"))
def test_hostile_token_gives_opaque_error_with_reason(
    case: dict[str, Any], keypairs: dict[str, KeyPair]
) -> None:
    named = _pairs(keypairs)
    base = named[case["base"]]
    token = mutate(case["op"], seal(b"attack at dawn", base.sealing), keypairs, base)
    opener = named[case.get("open_with", case["base"])].opening
    with pytest.raises(OpenError) as info:
        open_token(token, opener, max_bytes=MAX_BYTES)
    assert type(info.value) is OpenError
    assert info.value.reason is Reason(case["reason"])
    assert str(info.value) == f"message could not be opened ({case['reason']})"


def test_at_least_thirty_hostile_vectors() -> None:
    assert len(vector_params("hostile.json")) >= 30


@pytest.mark.parametrize("base", ["ec", "rsa"])
def test_random_corruption_only_ever_raises_open_error(
    base: str, keypairs: dict[str, KeyPair]
) -> None:
    pair = _pairs(keypairs)[base]
    token = seal(b"fuzz me" * 10, pair.sealing)
    rng = random.Random(1234)
    outcomes: set[Reason] = set()
    for _ in range(1500):
        corrupted = bytearray(token)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            pos = rng.randrange(len(corrupted))
            if op == 0:
                corrupted[pos] = rng.randrange(256)
            elif op == 1:
                del corrupted[pos]
            else:
                corrupted.insert(pos, rng.randrange(256))
        try:
            opened = open_token(bytes(corrupted), pair.opening)
        except OpenError as exc:
            outcomes.add(exc.reason)
        else:
            # Only a mutation that left the token byte-identical in meaning may open.
            assert opened == b"fuzz me" * 10
    assert {Reason.MALFORMED, Reason.DECRYPT_FAILED} <= outcomes
