"""`sealq keys publish --sign-with` and `sealq keys signer-pem`: signed key sets.

The signing key is a KMS asymmetric key (ECC_NIST_P256, SIGN_VERIFY); its private half never
leaves KMS. Clients pin its public half (`signer-pem`) and accept only key sets it signed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sealq.aws import clients as aws
from sealq.aws.errors import AwsError, describe_aws_error
from sealq.durations import parse_duration
from sealq.errors import SealqError

DEFAULT_VALIDITY = "7d"


def _validity(text: str) -> timedelta:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 1:
        raise argparse.ArgumentTypeError("--signature-valid-for must be at least 1s")
    return timedelta(seconds=seconds)


def add_signing(publish: argparse.ArgumentParser, sub: argparse._SubParsersAction[Any]) -> None:
    """--sign-with on `publish`, and the `signer-pem` command."""
    publish.add_argument(
        "--sign-with",
        metavar="KMS_KEY",
        help="sign the JWKS (a compact JWS, ES256) with this KMS key id, ARN or alias/NAME "
        "(ECC_NIST_P256, SIGN_VERIFY); clients pin it with --verify-with",
    )
    publish.add_argument(
        "--signature-valid-for",
        type=_validity,
        help=f"with --sign-with: clients refuse the document after this long (default {DEFAULT_VALIDITY})",
    )
    p = sub.add_parser(
        "signer-pem",
        help="print the --sign-with key's public half for clients to pin",
        description="Export the verifying key of --sign-with (KMS GetPublicKey) as PEM, as a "
        "JWK whose kid is its RFC 7638 thumbprint, or both as JSON.",
    )
    p.add_argument("--sign-with", required=True, metavar="KMS_KEY", help="KMS key id, ARN or alias/NAME")
    p.add_argument("--format", choices=("pem", "jwk", "json"), default="pem")
    p.add_argument("--out", default="-", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_signer_pem)


def _signer(kms: Any, key_id: str) -> Any:
    from sealq.keys.signing import signer

    try:
        return signer(kms, key_id)
    except AwsError as exc:
        raise SealqError(
            f"{describe_aws_error(exc, 'KMS GetPublicKey')}; check --sign-with {key_id!r}"
        ) from None


def _previous(out: str) -> bytes | None:
    if out == "-":
        return None
    try:
        return Path(out).read_bytes()
    except OSError:
        return None


def published_text(args: argparse.Namespace, jwks: dict[str, Any], now: datetime) -> str:
    """What `publish` writes: the JWKS, or with --sign-with the JWS over it (and a line on
    stderr saying what it signed)."""
    if not args.sign_with:
        if args.signature_valid_for is not None:
            raise SealqError("--signature-valid-for applies only with --sign-with KMS_KEY")
        return json.dumps(jwks, indent=2) + "\n"
    from sealq.keys.signing import next_version, sign_jwks

    kms = aws.client("kms")
    by = _signer(kms, args.sign_with)
    version = next_version(_previous(args.out), by, time.time_ns() // 1_000_000)
    validity = args.signature_valid_for or _validity(DEFAULT_VALIDITY)
    valid_for = int(validity.total_seconds())
    try:
        document = sign_jwks(kms, by, jwks, now=int(now.timestamp()), valid_for_s=valid_for, version=version)
    except AwsError as exc:
        problem = describe_aws_error(exc, "KMS Sign")
        raise SealqError(f"{problem}; check --sign-with {args.sign_with!r}") from None
    print(f"signed by {by.thumbprint} as version {version}, valid for {valid_for}s", file=sys.stderr)
    return document + "\n"


def cmd_signer_pem(args: argparse.Namespace) -> int:
    by = _signer(aws.client("kms"), args.sign_with)
    if args.format == "pem":
        text = by.pem()
    elif args.format == "jwk":
        text = json.dumps(by.jwk(), indent=2) + "\n"
    else:
        text = json.dumps({"thumbprint": by.thumbprint, "jwk": by.jwk(), "pem": by.pem()}, indent=2) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise SealqError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"thumbprint {by.thumbprint} (the kid of every key set it signs)", file=sys.stderr)
    return 0
