"""Open (decrypt) throughput of sealq's JWE profile against the raw primitives that bound it.

For each alg, in one run and interleaved round by round (these machines are shared and noisy):
- `open_per_s`: producer.jwe.open_token on real tokens (parse + key agreement/unwrap + AES-GCM);
- `primitive_per_s`: only the unavoidable cryptography, on the same 64 rotating messages:
  for ECDH, loading the message's ephemeral point (its on-curve check is what makes ECDH safe,
  and a fresh point costs ~10 us more in the exchange than a reused one) and the exchange;
  for RSA, the OAEP-256 decrypt; then AES-256-GCM decrypt of the same payload;
- `ratio` = open / primitive (1.0 would mean the format costs nothing on top).
Single thread; prints one JSON document. Usage: python bench/envelope.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import cryptography
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealq.envelope.jwe import OAEP_SHA256, OpeningKey, open_token, parse, seal
from sealq.envelope.jwk import SealingKey, alg_for_key

PAYLOAD = os.urandom(1024)


def rate(fn: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            fn()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def bench_alg(
    name: str, private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, seconds: float, rounds: int
) -> dict[str, object]:
    public = private.public_key()
    sealing = SealingKey("bench", alg_for_key(public), public)
    opening = OpeningKey("bench", private)
    tokens = [seal(PAYLOAD, sealing) for _ in range(64)]
    parsed_all = [parse(t) for t in tokens]
    aad = parsed_all[0].aad
    cek = os.urandom(32)
    iv = os.urandom(12)
    gcm_ct = AESGCM(cek).encrypt(iv, PAYLOAD, aad)
    slot = 0
    if isinstance(private, ec.EllipticCurvePrivateKey):
        curve = private.curve
        points = [
            p.epk.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)  # type: ignore[union-attr]
            for p in parsed_all
        ]
        ecdh = ec.ECDH()

        def primitive() -> None:
            nonlocal slot
            slot = (slot + 1) % 64
            peer = ec.EllipticCurvePublicKey.from_encoded_point(curve, points[slot])
            private.exchange(ecdh, peer)
            AESGCM(cek).decrypt(iv, gcm_ct, aad)
    else:
        wrapped = [p.encrypted_key for p in parsed_all]

        def primitive() -> None:
            nonlocal slot
            slot = (slot + 1) % 64
            private.decrypt(wrapped[slot], OAEP_SHA256)
            AESGCM(cek).decrypt(iv, gcm_ct, aad)

    index = 0

    def sealq_open() -> None:
        nonlocal index
        index = (index + 1) % len(tokens)
        open_token(tokens[index], opening)

    opens, prims = [], []
    for _ in range(rounds):
        opens.append(rate(sealq_open, seconds))
        prims.append(rate(primitive, seconds))
    open_rate, prim_rate = statistics.median(opens), statistics.median(prims)
    return {
        "alg": name,
        "payload_bytes": len(PAYLOAD),
        "open_per_s": round(open_rate, 1),
        "primitive_per_s": round(prim_rate, 1),
        "ratio": round(open_rate / prim_rate, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; median kept")
    args = parser.parse_args()
    cases: list[tuple[str, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]] = [
        ("ECDH-ES+A256KW P-256", ec.generate_private_key(ec.SECP256R1())),
        ("ECDH-ES+A256KW P-384", ec.generate_private_key(ec.SECP384R1())),
        ("RSA-OAEP-256 RSA-2048", rsa.generate_private_key(65537, 2048)),
        ("RSA-OAEP-256 RSA-4096", rsa.generate_private_key(65537, 4096)),
    ]
    results = [bench_alg(name, key, args.seconds, args.rounds) for name, key in cases]
    print(
        json.dumps(
            {
                "bench": "envelope",
                "python": platform.python_version(),
                "cryptography": cryptography.__version__,
                "cpu_count": os.cpu_count(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
