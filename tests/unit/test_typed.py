"""Typed handlers, without a worker: which signatures sealq accepts (and the clear error for
the rest, at start-up), what the adapted handler passes, and what an invalid payload's
detail says: field paths and error types, never a value from the payload."""

from __future__ import annotations

import asyncio
import functools
import random
import re
import textwrap
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

import sealq.worker.typed as typed
from sealq.cli.dlq_render import render_stats
from sealq.dlq.records import DlqRecord, aggregate, parse_reason
from sealq.errors import Reason
from sealq.worker.handler import HandlerLoadError, InvalidPayload, Message
from sealq.worker.loading import as_handler, load_handler
from sealq.worker.outcomes import MAX_DETAIL_CHARS, DeadLetter, Rules
from sealq.worker.typed import Declared, declared, validator


class Item(BaseModel):
    sku: str
    qty: int


class Order(BaseModel):
    customer: str
    items: list[Item]
    notes: dict[str, int] = Field(default_factory=dict)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["a"]


class Point(TypedDict):
    x: int


def message(plaintext: bytes) -> Message:
    return Message(plaintext=plaintext, kid="k1", message_id="m1", receive_count=1)


# ----- signatures -------------------------------------------------------------------------


async def untyped(message: Message) -> None: ...
async def unannotated(message): ...  # type: ignore[no-untyped-def]
async def payload_only(order: Order) -> None: ...
async def payload_and_message(order: Order, message: Message) -> None: ...
async def payload_and_bare(order: Order, m): ...  # type: ignore[no-untyped-def]
async def payload_and_option(order: Order, retries: int = 3) -> None: ...
def sync_payload(point: Point, message: Message) -> None: ...
async def loosely_annotated(message: Any) -> None: ...
def as_object(message: object) -> None: ...


class CallableHandler:
    async def __call__(self, order: Order, message: Message) -> None: ...


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (untyped, Declared()),
        (unannotated, Declared()),
        (payload_only, Declared(Order, with_message=False)),
        (payload_and_message, Declared(Order, with_message=True)),
        (payload_and_bare, Declared(Order, with_message=True)),
        (payload_and_option, Declared(Order, with_message=False)),
        (sync_payload, Declared(Point, with_message=True)),
        (functools.partial(payload_and_message), Declared(Order, with_message=True)),
        (CallableHandler(), Declared(Order, with_message=True)),
        (loosely_annotated, Declared()),  # Any / object: the Message, as before typed handlers
        (as_object, Declared()),
    ],
)
def test_the_signature_says_what_the_handler_takes(
    handler: Callable[..., object], expected: Declared
) -> None:
    # This module has `from __future__ import annotations`: every annotation is a string here.
    assert declared(handler) == expected


async def no_argument() -> None: ...
async def three(order: Order, message: Message, extra: int) -> None: ...
async def wrong_second(order: Order, other: Order) -> None: ...
async def message_then_more(message: Message, extra: int) -> None: ...
async def keyword_only(order: Order, *, db: object) -> None: ...
async def unknown_type(order: NotDefinedAnywhere) -> None: ...  # type: ignore[name-defined]  # noqa: F821


class Opaque:
    """Not something pydantic can validate into."""


async def opaque(value: Opaque) -> None: ...


class OldTypedDict(typing.TypedDict):
    x: int


async def old_typed_dict(value: OldTypedDict) -> None: ...


@pytest.mark.parametrize(
    ("handler", "says"),
    [
        (no_argument, "takes no argument"),
        (three, "more than (payload, message)"),
        (wrong_second, "parameter after the payload must be the Message"),
        (message_then_more, "needs more than the message (extra)"),
        (keyword_only, "required keyword-only parameters ['db']"),
        (unknown_type, "cannot resolve the type hints of handler unknown_type: name 'NotDefinedAnywhere'"),
        (opaque, "pydantic cannot validate into"),
        (old_typed_dict, "use `typing_extensions.TypedDict`"),
    ],
)
def test_a_signature_sealq_cannot_call_fails_at_start_up(handler: Callable[..., object], says: str) -> None:
    with pytest.raises(HandlerLoadError, match=re.escape(says)):
        as_handler(handler)


def test_message_imported_only_for_type_checking_still_loads(tmp_path: Path, monkeypatch: Any) -> None:
    """An existing handler whose `Message` annotation cannot be resolved at run time keeps
    working: it is untyped, as before typed handlers existed."""
    (tmp_path / "sealq_tc_handler.py").write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from sealq.worker import Message
            SEEN = []
            async def handle(message: Message) -> None:
                SEEN.append(message.plaintext)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    handler = load_handler("sealq_tc_handler:handle")
    asyncio.run(handler(message(b"x")))
    assert __import__("sealq_tc_handler").SEEN == [b"x"]


# ----- calling ------------------------------------------------------------------------------


def test_typed_handlers_get_the_validated_object_async_and_sync() -> None:
    got: list[object] = []

    async def async_handler(order: Order, m: Message) -> None:
        got.append((order, m.message_id))

    def sync_handler(point: Point) -> None:
        got.append(point)

    async def run() -> None:
        await as_handler(async_handler)(message(b'{"customer": "c", "items": [{"sku": "A", "qty": 2}]}'))
        await as_handler(sync_handler)(message(b'{"x": 1}'))

    asyncio.run(run())
    assert got == [(Order(customer="c", items=[Item(sku="A", qty=2)]), "m1"), {"x": 1}]


def test_adapting_twice_changes_nothing_and_untyped_async_handlers_are_unwrapped() -> None:
    adapted = as_handler(payload_only)
    assert as_handler(adapted) is adapted
    assert as_handler(untyped) is untyped


def test_the_adapter_is_built_once_whatever_the_number_of_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []

    class Counting(TypeAdapter):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(typed, "TypeAdapter", Counting)
    seen: list[Order] = []

    async def handle(order: Order) -> None:
        seen.append(order)

    async def run() -> None:
        adapted = as_handler(handle)
        for i in range(500):
            await adapted(message(b'{"customer": "c%d", "items": []}' % i))

    asyncio.run(run())
    assert len(seen) == 500 and built == [Order]


# ----- the detail of an invalid payload -------------------------------------------------------

SECRETS = ["alice@example.com", "4111111111111111", "lots-of-them", "ssn-078-05-1120", "hunter2"]


def invalid(payload: type[Any], plaintext: bytes) -> str:
    with pytest.raises(InvalidPayload) as caught:
        validator(payload)(plaintext)
    assert caught.value.__context__ is None and caught.value.__cause__ is None  # no ValidationError
    return str(caught.value)


def test_the_detail_names_paths_and_types_only() -> None:
    body = b'{"items": [{"sku": "alice@example.com", "qty": "lots-of-them"}, {"qty": 4111111111111111}]}'
    detail = invalid(Order, body)
    assert detail == "customer: missing; items.0.qty: int_parsing; items.1.sku: missing"
    assert [s for s in SECRETS if s in detail] == []


def test_segments_that_come_from_the_payload_are_hidden() -> None:
    """A dict key and an unexpected field name are the payload's, not the schema's."""
    detail = invalid(Order, b'{"customer": "c", "items": [], "notes": {"ssn-078-05-1120": "hunter2"}}')
    assert detail == "notes.*: int_parsing"
    detail = invalid(Strict, b'{"kind": "b", "ssn-078-05-1120": 1}')
    assert detail == "kind: literal_error; *: extra_forbidden"


def test_a_body_that_is_not_json_is_a_root_error_without_its_text() -> None:
    detail = invalid(Order, b"hunter2 is not json")
    assert detail == "(root): json_invalid"


def test_dataclasses_and_plain_types_validate_too() -> None:
    @dataclass
    class Reading:
        value: float

    assert validator(Reading)(b'{"value": 1.5}') == Reading(1.5)
    assert validator(list[int])(b"[1, 2]") == [1, 2]
    assert invalid(list[int], b'[1, "hunter2"]') == "1: int_parsing"


def test_a_long_detail_keeps_whole_entries_and_counts_the_rest() -> None:
    many = b'{"customer": "c", "items": [%s]}' % b", ".join([b'{"sku": 1, "qty": "x"}'] * 40)
    detail = invalid(Order, many)
    assert len(detail) <= MAX_DETAIL_CHARS
    shown, more = detail.rsplit("; +", 1)
    entries = shown.split("; ")
    assert entries[0] == "items.0.sku: string_type" and entries[1] == "items.0.qty: int_parsing"
    assert more == f"{80 - len(entries)} more"


def test_one_entry_longer_than_the_limit_is_cut_to_it() -> None:
    long_name = "field_" + "x" * 300
    model = TypedDict("Wide", {long_name: int})  # type: ignore[operator]
    assert invalid(model, b"{}") == f"{long_name}: missing"[:MAX_DETAIL_CHARS]
    detail = invalid(model, b"[1]")
    assert detail == "(root): dict_type"
    model2 = TypedDict("Wide2", {long_name: int, "b": int})  # type: ignore[operator]
    detail = invalid(model2, b"{}")
    assert len(detail) <= MAX_DETAIL_CHARS and detail.endswith("; +1 more")
    assert detail.startswith("field_xxx")


def test_invalid_payload_dead_letters_at_once_with_its_detail() -> None:
    rules = Rules(max_attempts=5, backoff_base_s=2, backoff_max_s=8, kms_retry_s=15, rng=random.Random(1))
    outcome = rules.after_handler(InvalidPayload("customer: missing"), 1)
    assert outcome == DeadLetter(Reason.INVALID_PAYLOAD, "customer: missing")
    assert Reason.INVALID_PAYLOAD.value == "invalid-payload"


def test_dlq_stats_counts_invalid_payload_as_a_reason_of_its_own() -> None:
    records = [
        DlqRecord(f"m{i}", reason, "k1", "shop", age_s=1.0, size=10, body_size=5)
        for i, reason in enumerate(["invalid-payload", "invalid-payload", "handler-rejected"])
    ]
    assert [r.reported_reason for r in records] == ["invalid-payload", "invalid-payload", "handler-rejected"]
    stats = aggregate(records)
    assert stats.by_reason == {"handler-rejected": 1, "invalid-payload": 2}
    assert parse_reason("invalid-payload") == "invalid-payload"  # --reason and --max filters
    assert "invalid-payload" in render_stats("url", stats, truncated=False, in_flight=None)


def test_sealq_run_refuses_a_bad_typed_handler_in_one_line_before_any_aws_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sealq_bad_typed.py").write_text(
        "from pydantic import BaseModel\n"
        "class Order(BaseModel):\n    qty: int\n"
        "async def handle(order: Order, db, extra):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("sealq.worker.app.serve", lambda *a: pytest.fail("reached serve"))
    monkeypatch.setattr("sealq.worker.app.configure", lambda *a: None)  # leave logging alone
    from sealq.cli import main

    args = ["run", "--queue-url", "q", "--dlq-url", "d", "--keyset", "k", "--log-format", "json"]
    assert main([*args, "--handler", "sealq_bad_typed:handle"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "sealq: error: handler handle takes more than (payload, message); sealq passes only those"
    ]
