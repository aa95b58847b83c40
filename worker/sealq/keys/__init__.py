"""Key pairs through KMS: the keyset document, where it is stored, and the lifecycle
(create, rotate, expire, publish, sign the published key set). Needs `sealq[worker]` (pydantic)."""

from sealq.extras import require

require("worker", "sealq.keys", "pydantic")  # one line naming the extra, not a bare ModuleNotFoundError

from sealq.keys.keyset import KeyRecord, Keyset, KeySpec, KeyState, UnknownKidError
from sealq.keys.kms import KeyShreddedError, create_key, unwrap
from sealq.keys.signing import Signer, SignerKeyError, sign_jwks, signer
from sealq.keys.store import KeysetError, KeysetNotFoundError, KeysetStore

__all__ = [
    "KeyRecord",
    "KeyShreddedError",
    "KeySpec",
    "KeyState",
    "Keyset",
    "KeysetError",
    "KeysetNotFoundError",
    "KeysetStore",
    "Signer",
    "SignerKeyError",
    "UnknownKidError",
    "create_key",
    "sign_jwks",
    "signer",
    "unwrap",
]
