"""From `--handler module:function` (or a callable) to what the worker awaits per message.

Done once, at start-up: the signature is read (`typed.declared`), a payload type gets its
validator, and a plain function is wrapped to run in a thread so it cannot block the loop.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from sealq.worker.handler import Handler, HandlerLoadError, Message
from sealq.worker.typed import declared, validator


def load_handler(spec: str) -> Handler:
    """Import `module:function` and adapt it once (`typed.as_handler`): a plain function runs
    in a thread so it cannot block, a declared payload type is validated before the call."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerLoadError(f"cannot import handler module {module_name!r}: {exc}") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise HandlerLoadError(f"{module_name!r} has no callable {attr!r}; check --handler")
    return as_handler(func)


def as_handler(func: Callable[..., object]) -> Handler:
    """What the worker awaits per message, built once from `func`: async handlers run on the
    loop, plain functions (with their validation) in a thread, so neither can block it."""
    if getattr(func, "__sealq_handler__", False):
        return func  # type: ignore[return-value]
    spec = declared(func)
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)
    if spec.payload is None:
        if is_async:
            return func  # type: ignore[return-value]
        return _mark(_in_thread(func))
    validate = validator(spec.payload, f"handler {getattr(func, '__qualname__', type(func).__qualname__)}")
    call = _typed_call(func, validate, spec.with_message)
    if is_async:

        async def typed(message: Message) -> object:
            return await call(message)  # type: ignore[misc]

        return _mark(typed)
    return _mark(_in_thread(call))


def _typed_call(
    func: Callable[..., object], validate: Callable[[bytes], Any], with_message: bool
) -> Callable[[Message], object]:
    if with_message:
        return lambda message: func(validate(message.plaintext), message)
    return lambda message: func(validate(message.plaintext))


def _in_thread(func: Callable[[Message], object]) -> Handler:
    async def in_thread(message: Message) -> object:
        result = await asyncio.to_thread(func, message)
        # A callable that returns an awaitable (a partial, a wrapper) is async after all:
        # finishing without awaiting it would delete a message its handler never ran.
        if inspect.isawaitable(result):
            return await result
        return result

    return in_thread


def _mark(handler: Handler) -> Handler:
    handler.__sealq_handler__ = True  # type: ignore[attr-defined]
    return handler
