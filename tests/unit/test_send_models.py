"""Sending pydantic models: serialised once by duck typing (the base install has no pydantic),
labelled `content-type: application/json`, within SQS's ten attributes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from pydantic import BaseModel

from sealq.aws.limits import SQS_MAX_ATTRIBUTES
from sealq.envelope.attributes import ATTR_CONTENT_TYPE
from sealq.envelope.jwe import open_token
from sealq.errors import InvalidAttributeError
from sealq.producer import JSON_CONTENT_TYPE
from sealq.producer.message import OutgoingMessage, as_message, build_entries, build_entry
from tests.conftest import KeyPair

NOW = 1_800_000_000.0


class Order(BaseModel):
    customer: str
    qty: int


def _opened(pair: KeyPair, body: str) -> bytes:
    return open_token(body.encode(), pair.opening)


def test_a_model_is_sent_as_its_json_with_the_json_content_type(ec_pair: KeyPair) -> None:
    order = Order(customer="c1", qty=2)
    entry = build_entry(0, as_message(order, "shop"), ec_pair.sealing, NOW)
    assert Order.model_validate_json(_opened(ec_pair, entry.body)) == order
    assert entry.attributes[ATTR_CONTENT_TYPE] == {"DataType": "String", "StringValue": "application/json"}
    assert JSON_CONTENT_TYPE == "application/json"


def test_an_explicit_content_type_wins_and_bytes_get_none() -> None:
    order = Order(customer="c1", qty=2)
    assert OutgoingMessage(order, content_type="application/vnd.order+json").content_type == (
        "application/vnd.order+json"
    )
    assert OutgoingMessage(order).plaintext == order.model_dump_json().encode()
    assert OutgoingMessage(b"{}").content_type is None


def test_anything_else_is_refused_before_sealing() -> None:
    with pytest.raises(TypeError, match="cannot send a dict: give bytes, str or a pydantic model"):
        OutgoingMessage({"customer": "c1"})  # type: ignore[arg-type]


def test_batches_take_models_and_an_entry_over_the_attribute_limit_fails_alone(ec_pair: KeyPair) -> None:
    own = {f"a{i}": "v" for i in range(SQS_MAX_ATTRIBUTES - 2)}  # + key-id + content-type = 10
    too_many = OutgoingMessage(Order(customer="c", qty=1), client_id="shop", attributes=own)  # 11
    fits = OutgoingMessage(Order(customer="c", qty=1), attributes=own)
    entries, result = build_entries([Order(customer="c", qty=0), too_many, fits], None, ec_pair.sealing, NOW)
    assert [e.index for e in entries] == [0, 2]
    assert len(entries[1].attributes) == SQS_MAX_ATTRIBUTES
    (failed,) = result.failed
    assert (failed.index, failed.code, failed.sender_fault) == (1, "TooManyAttributes", True)
    with pytest.raises(InvalidAttributeError, match=r"11 attributes .* SQS allows 10"):
        build_entry(0, too_many, ec_pair.sealing, NOW)


def test_the_producer_sends_models_without_pydantic_installed() -> None:
    """Duck typing: with pydantic unimportable, a model-like object is still sent as JSON."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pydantic"] = None  # `import pydantic` now raises ImportError
        import json
        from cryptography.hazmat.primitives.asymmetric import ec
        from sealq.envelope.jwk import Alg, SealingKey
        from sealq.producer import Producer
        from sealq.producer.message import as_message, build_entry

        class Model:
            def model_dump_json(self):
                return '{"qty": 3}'

        key = ec.generate_private_key(ec.SECP256R1())
        sealing = SealingKey("k1", Alg.ECDH_ES_A256KW, key.public_key())
        entry = build_entry(0, as_message(Model(), None), sealing, 1.0)
        print(json.dumps(entry.attributes["content-type"]))
        assert "pydantic" not in [m for m in sys.modules if sys.modules[m] is not None]
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"DataType": "String", "StringValue": "application/json"}
