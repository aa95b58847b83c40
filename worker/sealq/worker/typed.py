"""Typed handlers: a payload type in the handler's signature, validated by pydantic.

    async def handle(order: Order, message: Message) -> None: ...   # or handle(order: Order)

The signature is read once, when the handler is adapted (`loading.as_handler`, called by
`load_handler`, `Worker` and the test kit), and the `TypeAdapter` is built then too: per message there
is one `validate_json` call on the plaintext bytes and nothing else. A payload that does not
validate raises `InvalidPayload`, which the worker dead-letters as `invalid-payload` with a
detail naming field paths and pydantic error types only: never an input value (pydantic's
own messages quote them), and a path segment that is not a name from the type's schema (a
dict key, an unexpected field: both come from the payload) is shown as `*`.

Annotations are resolved with `inspect.signature(eval_str=True)` (what `typing.get_type_hints`
does, but it also works through `functools.partial` and callable objects), so
`from __future__ import annotations` works. A bad signature fails here, at start-up.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import PydanticUserError, TypeAdapter, ValidationError

from sealq.worker.handler import HandlerLoadError, InvalidPayload, Message
from sealq.worker.outcomes import MAX_DETAIL_CHARS

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_EMPTY = inspect.Parameter.empty
_UNTYPED = (_EMPTY, Any, object)
"""First-parameter annotations that mean "the Message", as before typed handlers existed."""


@dataclass(frozen=True, slots=True)
class Declared:
    """What a handler's signature asks for: a payload type (None: the `Message` itself)."""

    payload: Any = None
    with_message: bool = False


def declared(func: Callable[..., object]) -> Declared:
    """Read the handler's signature; HandlerLoadError if sealq cannot call it."""
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    try:
        signature = inspect.signature(func, eval_str=True)
    except NameError as exc:
        raw = _raw_signature(func)
        if raw is not None and _takes_message(raw):
            return Declared()  # `message: "Message"` imported only under TYPE_CHECKING
        raise HandlerLoadError(
            f"cannot resolve the type hints of handler {name}: {exc}; "
            "import the payload type at module level"
        ) from None
    except (TypeError, ValueError):
        return Declared()  # no signature to read (a builtin): called with the message
    params = list(signature.parameters.values())
    required_kw = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is _EMPTY]
    if required_kw:
        raise HandlerLoadError(
            f"handler {name} has required keyword-only parameters {required_kw}; sealq passes none"
        )
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params[:1]):
        return Declared()
    positional = [p for p in params if p.kind in _POSITIONAL]
    if not positional:
        raise HandlerLoadError(
            f"handler {name} takes no argument; declare (message: Message) or (payload: T)"
        )
    first, rest = positional[0], positional[1:]
    required = [p for p in rest if p.default is _EMPTY]
    if _is_message(first.annotation) or first.annotation in _UNTYPED:
        if required:
            raise HandlerLoadError(
                f"handler {name} needs more than the message ({', '.join(p.name for p in required)}); "
                "sealq passes (message) or, with a payload type first, (payload, message)"
            )
        return Declared()
    second = rest[0] if rest else None
    if second is not None and not (_is_message(second.annotation) or second.annotation is _EMPTY):
        if second.default is _EMPTY:
            raise HandlerLoadError(
                f"handler {name}: the parameter after the payload must be the Message, "
                f"not {second.annotation!r}"
            )
        second = None  # an optional parameter of the user's own: left to its default
    if len(required) > 1:
        raise HandlerLoadError(f"handler {name} takes more than (payload, message); sealq passes only those")
    return Declared(first.annotation, with_message=second is not None)


def validator(payload: Any, name: str = "the payload type") -> Callable[[bytes], Any]:
    """`validate(plaintext) -> object`, raising InvalidPayload; the adapter is built here, once."""
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(payload)
    except PydanticUserError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else exc.code
        raise HandlerLoadError(
            f"{name}: pydantic cannot validate into {payload!r} ({first_line}); annotate the "
            "payload with a pydantic model, dataclass, TypedDict or another type pydantic accepts"
        ) from None
    names = schema_names(adapter)
    validate_json = adapter.validate_json

    def validate(plaintext: bytes) -> Any:
        try:
            return validate_json(plaintext)
        except ValidationError as exc:
            detail = describe(exc, names)  # raised outside: no __context__ holding the input
        raise InvalidPayload(detail)

    return validate


def describe(error: ValidationError, names: frozenset[str]) -> str:
    """`items.0.qty: int_parsing; customer: missing`, within the DLQ detail's size. Only
    locations and error types: pydantic's messages and `input` may quote the payload."""
    details = error.errors(include_url=False, include_context=False, include_input=False)
    parts = [f"{'.'.join(_segment(s, names) for s in e['loc']) or '(root)'}: {e['type']}" for e in details]
    text = "; ".join(parts)
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    # Too long: as many whole entries as fit before "; +N more" (at least the first, cut).
    shown, size = 0, 0
    while shown < len(parts) - 1:
        grown = size + (2 if shown else 0) + len(parts[shown])
        if grown + len(f"; +{len(parts) - shown - 1} more") > MAX_DETAIL_CHARS:
            break
        shown, size = shown + 1, grown
    if len(parts) == 1:
        return text[:MAX_DETAIL_CHARS]
    if not shown:
        more = f"; +{len(parts) - 1} more"
        return parts[0][: MAX_DETAIL_CHARS - len(more)] + more
    return f"{text[:size]}; +{len(parts) - shown} more"


def schema_names(adapter: TypeAdapter[Any]) -> frozenset[str]:
    """Field names, aliases, model and tag names the type itself defines (from its JSON
    schema, once): path segments that cannot come from the payload."""
    try:
        schema = adapter.json_schema()
    except Exception:  # a type with no JSON schema: every named segment is then hidden
        return frozenset()
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in ("properties", "$defs"):
                if isinstance(node.get(key), dict):
                    found.update(node[key])
            discriminator = node.get("discriminator")
            if isinstance(discriminator, dict) and isinstance(discriminator.get("mapping"), dict):
                found.update(discriminator["mapping"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return frozenset(found)


def _segment(segment: str | int, names: frozenset[str]) -> str:
    return str(segment) if isinstance(segment, int) or segment in names else "*"


def _is_message(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Message)


def _raw_signature(func: Callable[..., object]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _takes_message(signature: inspect.Signature) -> bool:
    positional = [p for p in signature.parameters.values() if p.kind in _POSITIONAL]
    if not positional or any(p.default is _EMPTY for p in positional[1:]):
        return False
    annotation = positional[0].annotation
    return annotation is _EMPTY or (isinstance(annotation, str) and annotation.split(".")[-1] == "Message")
