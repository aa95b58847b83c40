"""sealq's test kit: test your handler through the real worker, with no AWS and no network.

    from sealq.errors import Reason
    from sealq.testing import run_handler
    from sealq.worker import HandlerRejected, Message

    async def handle(message: Message) -> None:
        order = message.json()
        if "sku" not in order:
            raise HandlerRejected("order without sku")

    async def test_orders_without_sku_are_dead_lettered() -> None:
        outcome = await run_handler(handle, b'{"qty": 1}', client_id="shop-eu")
        assert outcome.dead_lettered and outcome.reason is Reason.HANDLER_REJECTED
        assert outcome.detail == "order without sku"

    async def test_good_orders_are_handled() -> None:
        assert (await run_handler(handle, b'{"sku": "A1", "qty": 1}')).handled

`run_handler` seals the payload to a throwaway key, runs sealq's `Worker` over it (the same
classification, key unwrap, opening and outcome rules as in production) and returns a
`HandlerOutcome`: handled, dead-lettered (`reason`, `detail`) or retried (`retry_in_s`), with
the messages the handler saw and what it raised. `run_handler_sync` is the same for plain
test functions. `TestKey` gives producer tests a key to seal to (`sealing_key`, `jwks()`).

A typed handler (`async def handle(order: Order)`) is run the same way, on a model instance
(`run_handler(handle, Order(...))`, sent as a Producer sends it) or on raw bytes; a payload
that does not validate comes back dead-lettered as `Reason.INVALID_PAYLOAD`.

The parts, for tests of your own that need more: `MemorySQS`/`MemoryQueue`/`MemoryFifoQueue`
(an in-memory SQS that keeps the rules the worker depends on), `MemoryS3` (payloads sent
through S3), `FakeKMS` (KMS Decrypt of fake-wrapped keys; CreateKey/Sign/GetPublicKey of
ECC_NIST_P256 signing keys, for signed key sets), `record_for` and `write_keyset` (a keyset
file holding only fake-wrapped keys).
Needs `sealq[worker]`.
"""

from sealq.testing.fifo_sqs import MemoryFifoQueue
from sealq.testing.harness import HandlerOutcome, Settled, run_handler, run_handler_sync
from sealq.testing.keys import KeyKind, TestKey
from sealq.testing.kms import FakeKMS, record_for, write_keyset
from sealq.testing.s3 import MemoryS3
from sealq.testing.sqs import MemoryQueue, MemorySQS, QueuedMessage

__all__ = [
    "FakeKMS",
    "HandlerOutcome",
    "KeyKind",
    "MemoryFifoQueue",
    "MemoryQueue",
    "MemoryS3",
    "MemorySQS",
    "QueuedMessage",
    "Settled",
    "TestKey",
    "record_for",
    "run_handler",
    "run_handler_sync",
    "write_keyset",
]
