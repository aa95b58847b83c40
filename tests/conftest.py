"""Keys shared by the tests. Generated per session: no private key is ever read from disk
except the clearly labelled test-only keys inside tests/vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealq.envelope.jwe import OpeningKey
from sealq.envelope.jwk import PrivateKeyObject, SealingKey, alg_for_key

VECTORS = Path(__file__).parent / "vectors"

KEY_KINDS = ["P-256", "P-384", "P-521", "RSA-2048", "RSA-3072", "RSA-4096"]


def load_vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def vector_params(name: str, field: str = "cases") -> list[Any]:
    """pytest.param per vector case, named by its `name`."""
    cases = load_vectors(name)[field]
    return [pytest.param(case, id=case["name"]) for case in cases]


def _generate(kind: str) -> PrivateKeyObject:
    if kind.startswith("P-"):
        curve = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}[kind]
        return ec.generate_private_key(curve())
    return rsa.generate_private_key(65537, int(kind.split("-")[1]))


class KeyPair:
    def __init__(self, kind: str, kid: str) -> None:
        self.kind = kind
        self.kid = kid
        self.private = _generate(kind)
        self.public = self.private.public_key()
        self.sealing = SealingKey(kid, alg_for_key(self.public), self.public)
        self.opening = OpeningKey(kid, self.private)


@pytest.fixture(scope="session")
def keypairs() -> dict[str, KeyPair]:
    return {kind: KeyPair(kind, f"test-{kind.lower()}") for kind in KEY_KINDS}


@pytest.fixture(scope="session")
def ec_pair(keypairs: dict[str, KeyPair]) -> KeyPair:
    return keypairs["P-256"]


@pytest.fixture(scope="session")
def rsa_pair(keypairs: dict[str, KeyPair]) -> KeyPair:
    return keypairs["RSA-2048"]
