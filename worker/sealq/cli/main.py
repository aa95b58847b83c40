"""The `sealq` command. Every failure the user can fix ends as one line on stderr and a
non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sealq.aws.errors import AwsError, describe_aws_error
from sealq.cli.dlq import add_dlq_parser
from sealq.cli.keys import add_keys_parser
from sealq.cli.parser import OneLineArgumentParser
from sealq.cli.run import add_health_parser, add_run_parser
from sealq.cli.send import add_send_parser
from sealq.demo.run import add_demo_parser
from sealq.errors import SealqError
from sealq.keys.keyset import UnknownKidError
from sealq.keys.kms import KeyShreddedError


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="sealq",
        description="Messages over SQS that only the holder of a KMS-wrapped key can read.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_keys_parser(sub)
    add_send_parser(sub)
    add_run_parser(sub)
    add_health_parser(sub)
    add_demo_parser(sub)
    add_dlq_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (SealqError, UnknownKidError, KeyShreddedError) as exc:
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


