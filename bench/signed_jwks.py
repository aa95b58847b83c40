"""What verifying a signed key set costs a producer, against the primitive that bounds it.

In one run, interleaved round by round (shared, noisy machines):
- `verify_per_s`: sealq.producer.signed.verify_document on a KMS-style signed two-key JWKS
  (split, header checks, ECDSA P-256 verify, payload parse); `ecdsa_per_s`: only the ECDSA
  verify of the same signing input; `verify_ratio` = verify / ecdsa;
- `current_signed_per_s` / `current_unsigned_per_s`: PublicKeySet.current() (the per-message
  key choice) with and without `verify_with`; `current_ratio` = signed / unsigned (verification
  happens per fetch, so this should stay ~1.0).
Single thread; prints one JSON document. Usage: python bench/signed_jwks.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.envelope.jwk import public_key_to_jwk
from sealq.keys.signing import sign_jwks, signer
from sealq.producer.jwks import PublicKeySet
from sealq.producer.pins import load_pins
from sealq.producer.signed import verify_document
from sealq.testing import FakeKMS


def rate(fn: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            fn()
        count += 20
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kms = FakeKMS()
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    by, now = signer(kms, key_id), int(time.time())
    keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(2)]
    jwks = {
        "keys": [
            public_key_to_jwk(k, f"k{i}", not_before=now - 10, expires_at=now + 86400)
            for i, k in enumerate(keys)
        ]
    }
    document = sign_jwks(kms, by, jwks, now=now, valid_for_s=3600, version=1)
    pins = load_pins(by.pem())
    head, payload, _ = document.encode().split(b".")
    der = kms.sign(KeyId=key_id, Message=head + b"." + payload, SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "plain.json").write_text(json.dumps(jwks))
        (Path(tmp) / "signed.jws").write_text(document)
        unsigned = PublicKeySet(Path(tmp) / "plain.json")
        signed = PublicKeySet(Path(tmp) / "signed.jws", verify_with=by.pem())
    runs: dict[str, list[float]] = {k: [] for k in ("verify", "ecdsa", "current_signed", "current_unsigned")}
    for _ in range(args.rounds):
        runs["verify"].append(rate(lambda: verify_document(document, pins, now), args.seconds))
        runs["ecdsa"].append(
            rate(
                lambda: by.public_key.verify(der, head + b"." + payload, ec.ECDSA(hashes.SHA256())),
                args.seconds,
            )
        )
        runs["current_signed"].append(rate(signed.current, args.seconds))
        runs["current_unsigned"].append(rate(unsigned.current, args.seconds))
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(
        json.dumps(
            {
                **{f"{k}_per_s": round(v) for k, v in med.items()},
                "verify_ratio": round(med["verify"] / med["ecdsa"], 3),
                "current_ratio": round(med["current_signed"] / med["current_unsigned"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
