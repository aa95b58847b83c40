"""The `sealq` command: argparse wiring and rendering only. Each command imports what it
needs when it runs, so `sealq keys list` never loads the worker pool or aiobotocore."""

from sealq.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
