"""The `sealq` command. Every failure the user can fix ends as one line on stderr and a
non-zero exit, never a traceback.

The parser is built from light modules only: each command imports what it needs when it
runs, so `sealq keys list` or `sealq send` never load aiobotocore, the worker, the demo or
the stand-in, and work on an install without the extras they do not need. `run`'s flags come
from the worker settings model, so they are built only when the command line asks for `run`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sealq.aws.errors import AwsError, describe_aws_error
from sealq.cli.demo import add_demo_parser
from sealq.cli.dlq import add_dlq_parser
from sealq.cli.keys import add_keys_parser
from sealq.cli.parser import OneLineArgumentParser
from sealq.cli.run import add_health_parser, add_run_parser
from sealq.cli.send import add_send_parser
from sealq.errors import SealqError


def build_parser(*, run_flags: bool = False) -> argparse.ArgumentParser:
    """The whole parser; `run_flags` adds `run`'s flags (needs the worker extra)."""
    parser = OneLineArgumentParser(
        prog="sealq",
        description="Messages over SQS that only the holder of a KMS-wrapped key can read.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_keys_parser(sub)
    add_send_parser(sub)
    add_run_parser(sub, with_flags=run_flags)
    add_health_parser(sub)
    add_demo_parser(sub)
    add_dlq_parser(sub)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command word: the top-level parser has no options that take a value."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(run_flags=_command(args_in) == "run")
        args = parser.parse_args(args_in)
        code: int = args.func(args)
    except SealqError as exc:
        message = exc.args[0] if exc.args else str(exc)
        print(f"sealq: error: {message}", file=sys.stderr)
        return 1
    except AwsError as exc:
        print(f"sealq: error: {describe_aws_error(exc, 'AWS call')}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `sealq keys list | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("sealq: interrupted", file=sys.stderr)
        return 130
    return code
