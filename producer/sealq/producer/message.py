"""Turning plaintexts into SQS entries, and entries into batches: the pure half of sending.

`Producer` and `AsyncProducer` differ only in how they call SQS; everything they decide
(attributes, size checks, how entries are grouped, what a batch result means) lives here.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from sealq.aws.limits import (
    PRODUCER_MAX_MESSAGE_BYTES,
    SQS_MAX_ATTRIBUTES,
    SQS_MAX_BATCH_BYTES,
    SQS_MAX_BATCH_ENTRIES,
    message_size,
)
from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_CONTENT_TYPE, ATTR_KEY_ID
from sealq.envelope.jwe import seal_at
from sealq.envelope.jwk import SealingKey
from sealq.errors import InvalidAttributeError, MessageTooLargeError
from sealq.producer.fifo import QueueKind, check_ids

JSON_CONTENT_TYPE = "application/json"
"""The `content-type` a model is sent with, unless the caller names another."""


class JsonModel(Protocol):
    """A pydantic model, by duck typing: the base install has no pydantic to import."""

    def model_dump_json(self) -> str: ...


Body: TypeAlias = "bytes | str | JsonModel"


def check_attribute(name: str, value: str | None) -> None:
    """SQS rejects an empty attribute value per entry, after the call; refuse it before."""
    if value is not None and not value:
        raise InvalidAttributeError(
            f"{name} must not be empty: SQS rejects empty attribute values; leave it out or give a value"
        )


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One plaintext to send, with the optional attributes a worker or operator will see,
    and for a FIFO queue its group (required there) and deduplication id (see `fifo`).

    A pydantic model as `body` is serialised here, once (`model_dump_json`), and sent as
    `content-type: application/json` unless `content_type` says otherwise."""

    body: Body
    client_id: str | None = None
    content_type: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    group_id: str | None = None
    deduplication_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes | str):
            dump = getattr(self.body, "model_dump_json", None)
            if not callable(dump):
                raise TypeError(
                    f"cannot send a {type(self.body).__name__}: give bytes, str or a pydantic model"
                )
            object.__setattr__(self, "body", dump())
            if self.content_type is None:
                object.__setattr__(self, "content_type", JSON_CONTENT_TYPE)
        check_attribute(ATTR_CLIENT_ID, self.client_id)
        check_attribute(ATTR_CONTENT_TYPE, self.content_type)
        for name, value in self.attributes.items():
            check_attribute(name, value)
        check_ids(self.group_id, self.deduplication_id)

    @property
    def plaintext(self) -> bytes:
        body = self.body
        assert isinstance(body, bytes | str)  # a model became its JSON in __post_init__
        return body.encode("utf-8") if isinstance(body, str) else body


Sendable: TypeAlias = "OutgoingMessage | bytes | str | JsonModel"
"""What `send` and `send_batch` take: a message, a plaintext, or a pydantic model."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A sealed message ready for SendMessage(Batch), with its SQS-counted size."""

    index: int
    body: str
    attributes: dict[str, dict[str, str]]
    size: int
    fifo: dict[str, str] = field(default_factory=dict)
    """MessageGroupId / MessageDeduplicationId, as SendMessage(Batch) parameters."""


@dataclass(frozen=True, slots=True)
class SentEntry:
    index: int
    message_id: str


@dataclass(frozen=True, slots=True)
class FailedEntry:
    index: int
    code: str
    message: str
    sender_fault: bool


@dataclass(slots=True)
class BatchResult:
    """Per-entry outcome of `send_batch`; indexes refer to the caller's input order."""

    sent: list[SentEntry] = field(default_factory=list)
    failed: list[FailedEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def as_message(item: Sendable, client_id: str | None) -> OutgoingMessage:
    if isinstance(item, OutgoingMessage):
        if item.client_id is None and client_id is not None:
            return OutgoingMessage(
                item.body, client_id, item.content_type, item.attributes, item.group_id, item.deduplication_id
            )
        return item
    return OutgoingMessage(item, client_id)


def build_entry(
    index: int,
    message: OutgoingMessage,
    key: SealingKey,
    now: float,
    queue: QueueKind | None = None,
    *,
    offload: bool = False,
) -> Entry:
    """Seal one message and attach its attributes; MessageTooLargeError past the SQS limit
    less DLQ_HEADROOM_BYTES (room for the reason a dead-letter copy carries), unless it is
    to be offloaded to S3 (`offload`: the caller then sends a pointer, see `offload`). With
    `queue`, its FIFO fields too (FifoError, before sealing, if SQS would refuse them)."""
    fifo = {} if queue is None else queue.fields(index, message.group_id, message.deduplication_id)
    body = seal_at(message.plaintext, key, now).decode("ascii")
    attrs: dict[str, str] = dict(message.attributes)
    attrs[ATTR_KEY_ID] = key.kid
    if message.client_id is not None:
        attrs[ATTR_CLIENT_ID] = message.client_id
    if message.content_type is not None:
        attrs[ATTR_CONTENT_TYPE] = message.content_type
    if len(attrs) > SQS_MAX_ATTRIBUTES:
        raise InvalidAttributeError(
            f"message {index} has {len(attrs)} attributes counting sealq's key-id, client-id and "
            f"content-type; SQS allows {SQS_MAX_ATTRIBUTES}: drop some of your own"
        )
    sqs_attrs = {name: {"DataType": "String", "StringValue": v} for name, v in attrs.items()}
    size = message_size(body, sqs_attrs)
    if size > PRODUCER_MAX_MESSAGE_BYTES and not offload:
        raise MessageTooLargeError(
            f"message {index} is {size} bytes once sealed; sealq sends at most "
            f"{PRODUCER_MAX_MESSAGE_BYTES} (about {PRODUCER_MAX_MESSAGE_BYTES * 3 // 4 - 1024} bytes of "
            "plaintext): give the producer an s3_bucket (sealq send --s3-bucket) to send it through S3"
        )
    return Entry(index, body, sqs_attrs, size, fifo)


def plan_batches(entries: Iterable[Entry]) -> list[list[Entry]]:
    """Group entries in order into SendMessageBatch calls of at most 10 entries and 1 MiB."""
    batches: list[list[Entry]] = []
    current: list[Entry] = []
    current_size = 0
    for entry in entries:
        if current and (
            len(current) == SQS_MAX_BATCH_ENTRIES
            or current_size + entry.size > SQS_MAX_BATCH_BYTES
        ):
            batches.append(current)
            current, current_size = [], 0
        current.append(entry)
        current_size += entry.size
    if current:
        batches.append(current)
    return batches


def batch_request(entries: list[Entry]) -> list[dict[str, Any]]:
    return [
        {"Id": str(e.index), "MessageBody": e.body, "MessageAttributes": e.attributes, **e.fifo}
        for e in entries
    ]


def apply_batch_response(
    response: Mapping[str, Any], pending: list[Entry], result: BatchResult
) -> list[Entry]:
    """Record what SQS accepted; return the entries worth retrying (not the sender's fault).

    An entry SQS neither accepted nor rejected is treated as retryable so nothing is dropped.
    """
    by_id = {str(e.index): e for e in pending}
    for ok in response.get("Successful", []):
        entry = by_id.pop(ok["Id"], None)
        if entry is not None:
            result.sent.append(SentEntry(entry.index, ok["MessageId"]))
    retry: list[Entry] = []
    for bad in response.get("Failed", []):
        entry = by_id.pop(bad["Id"], None)
        if entry is None:
            continue
        if bad.get("SenderFault", False):
            result.failed.append(
                FailedEntry(entry.index, bad.get("Code", "error"), bad.get("Message", ""), True)
            )
        else:
            retry.append(entry)
    retry.extend(by_id.values())
    return retry


def give_up(entries: list[Entry], result: BatchResult, code: str, message: str) -> None:
    for entry in entries:
        result.failed.append(FailedEntry(entry.index, code, message, False))


def batch_exchanges(
    entries: Iterable[Entry], result: BatchResult, retries: int
) -> Generator[list[Entry], Mapping[str, Any], None]:
    """Sans-I/O send loop: yields each batch to send, receives SQS's response.

    Entries that fail through no fault of the sender are re-sent up to `retries` times, then
    reported as failed: the caller always learns the fate of every entry.
    """
    for batch in plan_batches(entries):
        pending = batch
        for _ in range(retries + 1):
            response = yield pending
            pending = apply_batch_response(response, pending, result)
            if not pending:
                break
        else:
            give_up(pending, result, "RetriesExhausted", f"still failing after {retries} retries")


def build_entries(
    messages: Iterable[Sendable],
    client_id: str | None,
    key: SealingKey,
    now: float,
    queue: QueueKind | None = None,
    *,
    offload: bool = False,
) -> tuple[list[Entry], BatchResult]:
    """Seal every message; one too large for SQS (unless `offload`: it stays an entry for the
    caller to put in S3), or with too many attributes, becomes a failed entry, not an
    exception; FIFO fields SQS would refuse (a missing group id) raise FifoError before any call."""
    result = BatchResult()
    entries: list[Entry] = []
    for index, item in enumerate(messages):
        try:
            entries.append(build_entry(index, as_message(item, client_id), key, now, queue, offload=offload))
        except MessageTooLargeError as exc:
            result.failed.append(FailedEntry(index, "MessageTooLarge", str(exc), True))
        except InvalidAttributeError as exc:
            result.failed.append(FailedEntry(index, "TooManyAttributes", str(exc), True))
    return entries, result
