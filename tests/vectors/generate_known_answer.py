"""Regenerates jwe_known_answer.json: tokens made once by jwcrypto, joserfc and sealq under
fixed TEST-ONLY keys, so later sealq versions must keep opening them byte for byte.

Run: .venv/bin/python tests/vectors/generate_known_answer.py (only when adding cases).
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwe as rfc_jwe
from joserfc.jwk import ECKey, RSAKey
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk

from sealq.envelope.jwe import seal_at
from sealq.envelope.jwk import SealingKey, alg_for_key, public_key_to_jwk

OUT = Path(__file__).with_name("jwe_known_answer.json")


def main() -> None:
    cases = []
    keys = []
    for name, private in (
        ("kat-p256", ec.generate_private_key(ec.SECP256R1())),
        ("kat-rsa2048", rsa.generate_private_key(65537, 2048)),
    ):
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        keys.append({"kid": name, "test_only_private_pem": pem})
        alg = alg_for_key(private).value
        public_jwk = public_key_to_jwk(private.public_key(), name)
        header = {"alg": alg, "enc": "A256GCM", "kid": name}
        plaintext = f"known answer for {name}".encode()

        jc = jc_jwe.JWE(plaintext, protected=json.dumps(header))
        jc.add_recipient(jc_jwk.JWK(**public_jwk))
        cases.append(
            {
                "name": f"{name}-jwcrypto",
                "kid": name,
                "token": jc.serialize(compact=True),
                "plaintext": plaintext.decode(),
            }
        )

        rfc_key = (ECKey if alg.startswith("ECDH") else RSAKey).import_key(public_jwk)
        registry = rfc_jwe.JWERegistry(algorithms=[alg, "A256GCM"])
        token = rfc_jwe.encrypt_compact(header, plaintext, rfc_key, registry=registry)
        cases.append(
            {
                "name": f"{name}-joserfc",
                "kid": name,
                "token": token,
                "plaintext": plaintext.decode(),
            }
        )

        sealing = SealingKey(name, alg_for_key(private.public_key()), private.public_key())
        cases.append(
            {
                "name": f"{name}-sealq",
                "kid": name,
                "token": seal_at(plaintext, sealing, 1_764_000_000).decode(),
                "plaintext": plaintext.decode(),
            }
        )
    OUT.write_text(
        json.dumps(
            {
                "about": "TEST-ONLY keys, generated for these vectors and used nowhere else.",
                "keys": keys,
                "cases": cases,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
