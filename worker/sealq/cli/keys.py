"""`sealq keys ...`: the operator's key lifecycle commands.

The keyset is a pydantic model, so these commands need `sealq[worker]`; `sealq.keys` is
imported when a command runs (or parses a --spec), never while the parser is built.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sealq.aws import clients as aws
from sealq.aws.errors import AwsError, describe_aws_error
from sealq.cli.keys_sign import add_signing, published_text
from sealq.cli.parser import OneLineArgumentParser
from sealq.durations import format_duration, parse_duration
from sealq.errors import SealqError
from sealq.extras import require

if TYPE_CHECKING:
    from sealq.keys.keyset import KeyRecord, Keyset, KeySpec
    from sealq.keys.store import KeysetStore

# KMS answers that mean the --cmk value is what needs fixing.
_CMK_PROBLEMS = frozenset(
    {"NotFoundException", "DisabledException", "KMSInvalidStateException"}
    | {"InvalidKeyUsageException", "InvalidArnException", "AccessDeniedException"}
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _now() -> datetime:
    """Precise: `created_at` orders keys made in the same second (create, then rotate)."""
    return datetime.now(UTC)


def _duration(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _grace(text: str) -> timedelta:
    return timedelta(0) if text.strip() in ("0", "0s") else _duration(text)


def _default_grace() -> timedelta:
    from sealq.keys.shred import DEFAULT_KEY_GRACE_S

    text = os.environ.get("SEALQ_KEY_GRACE_S", "").strip()
    if not text:
        return timedelta(seconds=DEFAULT_KEY_GRACE_S)
    if not text.isdigit():
        raise SealqError(
            f"SEALQ_KEY_GRACE_S={text!r} is not a whole number of seconds; fix it or pass --grace"
        )
    return timedelta(seconds=int(text))


def _need_keys() -> None:
    require("worker", "sealq keys", "pydantic")


def _spec(text: str) -> KeySpec:
    _need_keys()
    from sealq.keys.keyset import KeySpec

    try:
        return KeySpec(text.upper())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown key spec {text!r}; choose one of {', '.join(s.value for s in KeySpec)}"
        ) from None


def add_keys_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    keys = subparsers.add_parser("keys", help="create, rotate, expire and publish key pairs")
    sub = keys.add_subparsers(
        dest="keys_command",
        required=True,
        metavar="COMMAND",
        parser_class=OneLineArgumentParser,
    )

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--keyset", help="keyset file or s3://bucket/key (default: $SEALQ_KEYSET)")
        p.add_argument(
            "--allowed-cmk-arns",
            help="comma-separated CMK ARNs keys may be wrapped by; refuse others "
            "(default: $SEALQ_ALLOWED_CMK_ARNS, else any)",
        )
        return p

    p = command("create", "create a key pair through KMS GenerateDataKeyPairWithoutPlaintext")
    p.add_argument("--cmk", required=True, help="KMS key id, ARN or alias/NAME that wraps it")
    p.add_argument("--spec", type=_spec, default="ECC_NIST_P256", help="default ECC_NIST_P256")
    p.add_argument("--expires-in", type=_duration, required=True, help="lifetime, e.g. 30d, 12h")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_create)

    p = command("list", "list keys with their state and lifetime")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = command("rotate", "create the next key now, like the current one unless told otherwise")
    p.add_argument("--cmk", help="default: the current key's CMK")
    p.add_argument("--spec", type=_spec, help="default: the current key's spec")
    p.add_argument("--expires-in", type=_duration, help="default: the current key's lifetime")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rotate)

    p = command("expire", "end a key now and erase its wrapped private key (crypto-shred)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("kid", nargs="?", help="the key to end")
    target.add_argument(
        "--past", action="store_true", help="shred every key expired longer ago than --grace (cron)"
    )
    p.add_argument(
        "--grace",
        type=_grace,
        help="with --past: keep keys expired less than this long ago, as the worker still opens "
        "messages sealed before expiry for its --key-grace-s (default: $SEALQ_KEY_GRACE_S, "
        "else the worker's default, 5m)",
    )
    p.set_defaults(func=cmd_expire)

    p = command("publish", "write the public keys as a JWKS for clients")
    p.add_argument("--out", default="-", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_publish)
    add_signing(p, sub)

    p = command("verify", "unwrap each live key once through KMS and check it matches its public key")
    p.set_defaults(func=cmd_verify)

    p = command("export-pem", "print one public key as PEM, as the openssl recipe uses it")
    p.add_argument("kid")
    p.add_argument("--out", default="-", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_export_pem)


def _store(args: argparse.Namespace) -> KeysetStore:
    """The --keyset, else $SEALQ_KEYSET, read now (not when the parser was built)."""
    _need_keys()
    from sealq.keys.store import KeysetStore

    return KeysetStore(args.keyset or os.environ.get("SEALQ_KEYSET", ""))


def _check_cmks(args: argparse.Namespace, records: list[KeyRecord]) -> None:
    """Refuse records wrapped by a CMK outside --allowed-cmk-arns (one line, naming the kid)."""
    from sealq.keys.keyset import refuse_foreign_cmks

    refuse_foreign_cmks(records, args.allowed_cmk_arns or os.environ.get("SEALQ_ALLOWED_CMK_ARNS", ""))


def _kms() -> Any:
    return aws.client("kms")


def _record_view(record: KeyRecord, now: datetime) -> dict[str, Any]:
    from sealq.keys.keyset import iso

    return {
        "kid": record.kid,
        "spec": record.key_spec.value,
        "alg": record.alg.value,
        "status": record.status(now),
        "not_before": iso(record.not_before),
        "expires_at": iso(record.expires_at),
        "cmk": record.cmk_arn,
        "private_key": "wrapped" if record.wrapped_private_key else "erased",
    }


def _write(out: str, text: str) -> None:
    if out == "-":
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SealqError(f"cannot write {out}: {exc.strerror}") from None


def _create(
    args: argparse.Namespace,
    store: KeysetStore,
    keyset: Keyset,
    *,
    cmk: str,
    spec: KeySpec,
    lifetime: timedelta,
) -> int:
    from sealq.keys.kms import create_key

    now = _now()
    try:
        record = create_key(_kms(), cmk=cmk, spec=spec, lifetime=lifetime, now=now)
    except AwsError as exc:
        message = describe_aws_error(exc, "KMS GenerateDataKeyPairWithoutPlaintext")
        if isinstance(exc, ClientError) and error_code(exc) in _CMK_PROBLEMS:
            message += f"; check --cmk {cmk!r} (key id, ARN or alias/NAME, enabled, in this region)"
        raise SealqError(message) from None
    _check_cmks(args, [record])
    store.save(keyset.with_record(record))
    if args.json:
        print(json.dumps(_record_view(record, now)))
    else:
        print(record.kid)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    store = _store(args)
    return _create(args, store, store.load_or_empty(), cmk=args.cmk, spec=args.spec, lifetime=args.expires_in)


def cmd_rotate(args: argparse.Namespace) -> int:
    store = _store(args)
    keyset = store.load()
    current = keyset.current(_now())
    if current is None:
        if not (args.cmk and args.spec and args.expires_in):
            raise SealqError(
                "no active key to rotate from; give --cmk, --spec and --expires-in, or use `keys create`"
            )
        return _create(args, store, keyset, cmk=args.cmk, spec=args.spec, lifetime=args.expires_in)
    if not args.cmk:
        _check_cmks(args, [current])
    return _create(
        args,
        store,
        keyset,
        cmk=args.cmk or current.cmk_arn,
        spec=args.spec or current.key_spec,
        lifetime=args.expires_in or (current.expires_at - current.not_before),
    )


def cmd_list(args: argparse.Namespace) -> int:
    keyset = _store(args).load()
    now = _now()
    views = [_record_view(r, now) for r in keyset]
    if args.json:
        print(json.dumps({"keys": views}, indent=2))
        return 0
    current = keyset.current(now)
    print(f"{'KID':<28} {'SPEC':<14} {'STATUS':<8} {'EXPIRES':<21} {'LEFT':<8} PRIVATE KEY")
    for record, view in zip(keyset, views, strict=True):
        left = (
            format_duration((record.expires_at - now).total_seconds())
            if record.wrapped_private_key
            else "shredded"
        )
        mark = " *" if current is not None and record.kid == current.kid else ""
        print(
            f"{view['kid']:<28} {view['spec']:<14} {view['status']:<8} {view['expires_at']:<21} "
            f"{left:<8} {view['private_key']}{mark}"
        )
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    store = _store(args)
    keyset = store.load()
    now = _now()
    kept: list[KeyRecord] = []
    grace = timedelta(0)
    if args.past:
        from sealq.keys.shred import past_grace

        grace = args.grace if args.grace is not None else _default_grace()
        targets, kept = past_grace(keyset, now, grace)
    elif args.grace is not None:
        raise SealqError("--grace applies only with --past; `keys expire KID` ends that key now")
    else:
        targets = [keyset.get(args.kid)]
    for record in targets:
        keyset = keyset.with_record(record.shredded(now))
    if targets:
        store.save(keyset)
    for record in targets:
        print(f"expired {record.kid}: wrapped private key erased")
    for record in kept:
        left = format_duration((record.expires_at + grace - now).total_seconds())
        within = format_duration(grace.total_seconds())
        print(f"kept {record.kid}: expired, but inside the {within} grace ({left} left)")
    if args.past and not targets and not kept:
        print("no key past its expiry still holds a wrapped private key")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    keyset = _store(args).load()
    now = _now()
    from sealq.keys.keyset import public_key_problem

    live = [r for r in keyset if r.status(now) != "expired"]
    _check_cmks(args, live)
    for record in live:
        problem = public_key_problem(record)
        if problem is not None:
            raise SealqError(problem)
    jwks = keyset.jwks(now)
    if not jwks["keys"]:
        raise SealqError("no unexpired key to publish; run `sealq keys create` or `keys rotate`")
    _write(args.out, published_text(args, jwks, now))
    if args.out != "-":
        print(f"wrote {len(jwks['keys'])} key(s) to {args.out}", file=sys.stderr)
    return 0


def cmd_export_pem(args: argparse.Namespace) -> int:
    record = _store(args).load().get(args.kid)
    _check_cmks(args, [record])
    _write(args.out, record.public_pem())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from sealq.keys.kms import verify_key

    now = _now()
    live = [r for r in _store(args).load() if r.status(now) != "expired" and r.wrapped_private_key]
    if not live:
        raise SealqError("no live key to verify; run `sealq keys create` or `keys rotate`")
    _check_cmks(args, live)
    kms, bad = _kms(), 0
    for record in live:
        problem = verify_key(kms, record)
        bad += problem is not None
        print(f"{record.kid}: {problem or 'ok: the private key matches its public key'}")
    return 1 if bad else 0
