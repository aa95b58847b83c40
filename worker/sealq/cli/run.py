"""`sealq run` and `sealq health`: parsing only. Start-up lives in `sealq.worker.app`.

`run`'s flags are generated from `WorkerSettings`, the one source of their names, types,
defaults and help; that model needs the worker extra, so the flags are added only when the
command line asks for `run` (see `sealq.cli.main`). Nothing here reads the environment while
the parser is built: SEALQ_* values are read by the settings model, SEALQ_METRICS_PORT by
`health`, when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from typing import TYPE_CHECKING, Any

from sealq.errors import SealqError
from sealq.extras import require

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

DEFAULT_HEALTH_PORT = 9090


def add_run_parser(subparsers: argparse._SubParsersAction[Any], *, with_flags: bool) -> None:
    """Register `run`; `with_flags` adds its flags (needs the worker extra)."""
    p = subparsers.add_parser(
        "run",
        help="run the worker pool",
        description="Consume a queue: decrypt each message and hand it to your handler. "
        "Every flag can also be set as SEALQ_<FLAG>, e.g. SEALQ_QUEUE_URL.",
    )
    if with_flags:
        require("worker", "sealq run")
        from sealq.worker.settings import WorkerSettings

        add_settings_flags(p, WorkerSettings)
    p.set_defaults(func=cmd_run)


def add_settings_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One `--field-name` per model field, typed, with the field's description and default.

    Flags have no argparse default: an absent flag leaves the value to SEALQ_* or the model.
    """
    for name, field in model.model_fields.items():
        if field.annotation is bool:  # --keep-payloads / --no-keep-payloads
            parser.add_argument(
                "--" + name.replace("_", "-"),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=flag_help(field).replace("%", "%%"),
            )
            continue
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=_flag_type(name, field.annotation),
            help=flag_help(field).replace("%", "%%"),
        )


def _flag_type(name: str, annotation: Any) -> type:
    kinds = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # `int | None`: int
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(kinds) == 1 and kinds[0] in (int, float, str):
        return typing.cast(type, kinds[0])
    raise TypeError(f"setting {name!r}: no command-line type for {annotation!r}")


def flag_help(field: FieldInfo) -> str:
    """The field's description with its default, as `--help` shows it."""
    text = field.description or ""
    if field.is_required():
        return text
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    shown = extra.get("default_help")
    if shown:
        return f"{text} (default: {shown})"
    if field.default_factory is not None:
        return text
    if field.default is None:
        return f"{text} (default: off)"
    value = field.default
    return f"{text} (default {value:g})" if isinstance(value, float) else f"{text} (default {value})"


def cmd_run(args: argparse.Namespace) -> int:
    require("worker", "sealq run")
    from sealq.worker.app import run
    from sealq.worker.settings import WorkerSettings, load_settings

    settings = load_settings(**{name: getattr(args, name, None) for name in WorkerSettings.model_fields})
    return run(settings)


def add_health_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "health",
        help="exit 0 when a local worker's /healthz answers OK (for container health checks)",
    )
    p.add_argument(
        "--port",
        type=int,
        help=f"the worker's --metrics-port (default: $SEALQ_METRICS_PORT, else {DEFAULT_HEALTH_PORT})",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--path", default="/healthz", choices=["/healthz", "/readyz"])
    p.set_defaults(func=cmd_health)


def health_port(args: argparse.Namespace) -> int:
    """--port, else SEALQ_METRICS_PORT (read now, so a bad value fails only `health`)."""
    if args.port is not None:
        return int(args.port)
    text = os.environ.get("SEALQ_METRICS_PORT", "").strip()
    if not text:
        return DEFAULT_HEALTH_PORT
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise SealqError(
            f"SEALQ_METRICS_PORT={text!r} is not a port; set it to a number from 1 to 65535 or pass --port"
        )
    return int(text)


def cmd_health(args: argparse.Namespace) -> int:
    port = health_port(args)
    require("worker", "sealq health")
    from sealq.worker.http import probe

    ok, detail = probe(f"http://{args.host}:{port}{args.path}")
    print(detail if ok else f"sealq: unhealthy: {detail}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
