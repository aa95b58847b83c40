"""FakeKMS's asymmetric signing keys: CreateKey, CreateAlias, GetPublicKey and Sign.

What `sealq keys publish --sign-with` and `keys signer-pem` call, with the AWS rules they
rely on (KMS API reference, Sign / GetPublicKey / CreateKey):

- CreateKey: KeySpec defaults to SYMMETRIC_DEFAULT and KeyUsage to ENCRYPT_DECRYPT; an ECC
  key spec needs KeyUsage SIGN_VERIFY or KEY_AGREEMENT (else ValidationException);
- a KeyId may be a key id, key ARN, `alias/NAME` or alias ARN; anything else is NotFoundException;
- Sign needs a SIGN_VERIFY key (else InvalidKeyUsageException) and one of its
  SigningAlgorithms (else InvalidKeyUsageException); a RAW message is 1 to 4096 bytes, a
  DIGEST exactly the algorithm's digest size (else ValidationException); the signature is
  DER, as KMS returns it;
- GetPublicKey of a symmetric key is UnsupportedOperationException.

These are sync methods, like the boto3 client the operator commands use (Decrypt is async,
like the aiobotocore client of the worker). Only ECC_NIST_P256 signing keys are modelled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

ACCOUNT_ARN = "arn:aws:kms:us-east-1:000000000000"
MAX_RAW_MESSAGE = 4096
_ECC_SPECS = ("ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1")


@dataclass
class _Key:
    arn: str
    spec: str
    usage: str
    private: ec.EllipticCurvePrivateKey | None

    @property
    def algorithms(self) -> list[str]:
        return ["ECDSA_SHA_256"] if self.private is not None else []


def _error(operation: str, code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class SigningKeys:
    """Mixed into FakeKMS: asymmetric keys whose private half stays in this object."""

    def __init__(self) -> None:
        self.keys: dict[str, _Key] = {}
        self.aliases: dict[str, str] = {}
        self.sign_calls = 0

    def create_key(self, **kw: Any) -> dict[str, Any]:
        spec = kw.get("KeySpec", "SYMMETRIC_DEFAULT")
        usage = kw.get("KeyUsage", "ENCRYPT_DECRYPT")
        if spec in _ECC_SPECS and usage not in ("SIGN_VERIFY", "KEY_AGREEMENT"):
            raise _error("CreateKey", "ValidationException", f"KeyUsage {usage} is not valid for {spec}")
        if spec == "SYMMETRIC_DEFAULT" and usage != "ENCRYPT_DECRYPT":
            raise _error("CreateKey", "ValidationException", f"KeyUsage {usage} is not valid for {spec}")
        if spec not in ("SYMMETRIC_DEFAULT", "ECC_NIST_P256") or usage == "KEY_AGREEMENT":
            raise NotImplementedError(f"FakeKMS does not model {spec} keys for {usage}")
        key_id = str(uuid.uuid4())
        private = ec.generate_private_key(ec.SECP256R1()) if spec == "ECC_NIST_P256" else None
        key = _Key(f"{ACCOUNT_ARN}:key/{key_id}", spec, usage, private)
        self.keys[key_id] = key
        metadata: dict[str, Any] = {"KeyId": key_id, "Arn": key.arn, "KeySpec": spec, "KeyUsage": usage}
        if key.algorithms:
            metadata["SigningAlgorithms"] = key.algorithms
        return {"KeyMetadata": metadata}

    def create_alias(self, **kw: Any) -> dict[str, Any]:
        name, target = kw["AliasName"], self._key("CreateAlias", kw["TargetKeyId"])
        if not name.startswith("alias/") or name.startswith("alias/aws/"):
            raise _error("CreateAlias", "ValidationException", f"invalid alias name {name}")
        if name in self.aliases:
            raise _error("CreateAlias", "AlreadyExistsException", f"{name} already exists")
        self.aliases[name] = target.arn.rsplit("/", 1)[1]
        return {}

    def _key(self, operation: str, key_id: str) -> _Key:
        if key_id.startswith(f"{ACCOUNT_ARN}:alias/"):
            key_id = key_id[len(ACCOUNT_ARN) + 1 :]
        if key_id.startswith("alias/"):
            key_id = self.aliases.get(key_id, "")
        elif key_id.startswith(f"{ACCOUNT_ARN}:key/"):
            key_id = key_id.rsplit("/", 1)[1]
        key = self.keys.get(key_id)
        if key is None:
            raise _error(operation, "NotFoundException", f"Invalid keyId {key_id}")
        return key

    def get_public_key(self, **kw: Any) -> dict[str, Any]:
        key = self._key("GetPublicKey", kw["KeyId"])
        if key.private is None:
            raise _error("GetPublicKey", "UnsupportedOperationException", f"{key.arn} is symmetric")
        der = key.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "KeyId": key.arn,
            "PublicKey": der,
            "KeySpec": key.spec,
            "KeyUsage": key.usage,
            "SigningAlgorithms": key.algorithms,
        }

    def sign(self, **kw: Any) -> dict[str, Any]:
        self.sign_calls += 1
        key = self._key("Sign", kw["KeyId"])
        algorithm, message = kw["SigningAlgorithm"], kw["Message"]
        message_type = kw.get("MessageType", "RAW")
        if key.usage != "SIGN_VERIFY" or key.private is None:
            raise _error("Sign", "InvalidKeyUsageException", f"{key.arn} key usage is {key.usage}")
        if algorithm not in key.algorithms:
            raise _error("Sign", "InvalidKeyUsageException", f"{algorithm} is not valid for {key.spec}")
        if message_type == "RAW" and not 1 <= len(message) <= MAX_RAW_MESSAGE:
            raise _error("Sign", "ValidationException", "a RAW message is 1 to 4096 bytes")
        if message_type == "DIGEST" and len(message) != 32:
            raise _error("Sign", "ValidationException", "Digest is invalid length for ECDSA_SHA_256")
        if message_type not in ("RAW", "DIGEST"):
            raise _error("Sign", "ValidationException", f"MessageType {message_type} is not valid")
        hashing = Prehashed(hashes.SHA256()) if message_type == "DIGEST" else hashes.SHA256()
        signature = key.private.sign(message, ec.ECDSA(hashing))
        return {"KeyId": key.arn, "Signature": signature, "SigningAlgorithm": algorithm}
