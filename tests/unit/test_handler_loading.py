"""`--handler module:function` resolves to something the worker awaits to completion: a
handler that 'returned' before its body ran would get its message deleted unhandled."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealq.worker.handler import HandlerLoadError, Message
from sealq.worker.loading import load_handler

MODULE = "sealq_test_handlers"


@pytest.fixture
def handlers_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    seen: list[str] = []
    (tmp_path / f"{MODULE}.py").write_text(
        textwrap.dedent(
            """
            import functools

            SEEN = None  # set by the test

            async def plain_async(message):
                SEEN.append("plain_async")

            def plain_sync(message):
                SEEN.append("plain_sync")

            class Handler:
                async def __call__(self, message):
                    SEEN.append("callable_object")

            callable_object = Handler()

            async def _with_prefix(prefix, message):
                SEEN.append(prefix)

            partial_async = functools.partial(_with_prefix, "partial_async")

            def returns_coroutine(message):
                return _with_prefix("returns_coroutine", message)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(MODULE)
    module.SEEN = seen
    yield seen
    sys.modules.pop(MODULE, None)


MESSAGE = Message(plaintext=b"x", kid="k1", message_id="m1", receive_count=1)


@pytest.mark.parametrize(
    "name", ["plain_async", "plain_sync", "callable_object", "partial_async", "returns_coroutine"]
)
def test_every_kind_of_handler_runs_before_the_call_returns(handlers_module: list[str], name: str) -> None:
    handler = load_handler(f"{MODULE}:{name}")
    asyncio.run(handler(MESSAGE))  # type: ignore[arg-type]
    assert handlers_module == [name]


def test_a_missing_function_names_the_flag(handlers_module: list[str]) -> None:
    with pytest.raises(HandlerLoadError, match="no callable 'nope'; check --handler"):
        load_handler(f"{MODULE}:nope")

