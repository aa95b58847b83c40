"""`sealq keys ...` driven as an operator would, against the local AWS stand-in.

Every command runs as a subprocess (`python -m worker.cli`), so what is checked is what a
user sees: stdout, one-line errors on stderr, exit codes, and the files left behind.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from joserfc import jwe as rfc_jwe
from joserfc.jwk import KeySet
from joserfc.registry import HeaderParameter
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk

from sealq.demo.standin import StandIn
from sealq.envelope.jwe import OpeningKey, open_token, seal
from sealq.envelope.raw import open_raw
from sealq.errors import OpenError, Reason
from sealq.keys.kms import KeyShreddedError, unwrap
from sealq.keys.store import parse_keyset
from sealq.producer.jwks import choose_key, parse_jwks

from .cli_helpers import cli_env, sealq, standin_client, unwrap_kid

_RFC_REGISTRY = rfc_jwe.JWERegistry(
    header_registry={"iat": HeaderParameter("Issued at", "int")},
    algorithms=["ECDH-ES+A256KW", "RSA-OAEP-256", "A256GCM"],
)
MESSAGE = "the keys were made by KMS — ünïcode".encode()


def private_pem(key: OpeningKey) -> bytes:
    return key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Made:
    """One keyset made through the CLI, shared by the module's read-only tests."""

    home: Path
    env: dict[str, str]
    keyset: Path
    cmk: str
    kids: dict[str, str]  # spec -> kid


@pytest.fixture(scope="module")
def kms(standin: StandIn) -> Any:
    return standin_client(standin, "kms")


@pytest.fixture(scope="module")
def cmk(kms: Any) -> str:
    return str(kms.create_key(Description="sealq keys cli test")["KeyMetadata"]["KeyId"])


@pytest.fixture(scope="module")
def made(standin: StandIn, cmk: str, tmp_path_factory: pytest.TempPathFactory) -> Made:
    home = tmp_path_factory.mktemp("keys-cli")
    env = cli_env(standin, home)
    kids = {}
    for spec in ("ECC_NIST_P256", "RSA_4096"):
        out = sealq(env, "keys", "create", "--cmk", cmk, "--spec", spec, "--expires-in", "30d")
        kids[spec] = out.stdout.strip()
    return Made(home, env, home / "keyset.json", cmk, kids)


@pytest.fixture
def own(made: Made, tmp_path: Path) -> Made:
    """A private copy of the shared keyset for tests that change it."""
    keyset = tmp_path / "keyset.json"
    shutil.copyfile(made.keyset, keyset)
    env = dict(made.env, SEALQ_KEYSET=str(keyset))
    return Made(tmp_path, env, keyset, made.cmk, dict(made.kids))


# --- create / list / publish --------------------------------------------------------------


def test_create_prints_the_new_kid_and_writes_the_keyset(made: Made) -> None:
    p256, rsa = made.kids["ECC_NIST_P256"], made.kids["RSA_4096"]
    assert p256.startswith("p256-") and rsa.startswith("rsa4096-")
    text = made.keyset.read_text()
    keyset = parse_keyset(text.encode())
    assert {r.kid for r in keyset} == {p256, rsa}
    for record in keyset:
        assert record.wrapped_private_key  # only the wrapped blob, never a plain key
        assert (record.expires_at - record.not_before).days == 30
        assert record.cmk_arn.endswith(made.cmk)
    assert "PRIVATE KEY" not in text
    assert oct(made.keyset.stat().st_mode & 0o777) == "0o600"


def test_list_table_and_json(made: Made) -> None:
    table = sealq(made.env, "keys", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["KID", "SPEC", "STATUS"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == set(made.kids.values())
    rsa_row = rows[made.kids["RSA_4096"]].split()
    assert rsa_row[1:3] == ["RSA_4096", "active"]
    assert rsa_row[4] in {"30d", "29d23h"}
    assert "wrapped" in rsa_row
    assert sum(line.endswith(" *") for line in table) == 1  # exactly one current key

    listed = json.loads(sealq(made.env, "keys", "list", "--json").stdout)["keys"]
    by_kid = {k["kid"]: k for k in listed}
    assert by_kid[made.kids["ECC_NIST_P256"]]["alg"] == "ECDH-ES+A256KW"
    assert by_kid[made.kids["RSA_4096"]]["alg"] == "RSA-OAEP-256"
    assert {k["status"] for k in listed} == {"active"}
    assert {k["private_key"] for k in listed} == {"wrapped"}


@pytest.fixture(scope="module")
def published(made: Made) -> dict[str, Any]:
    out = made.home / "jwks.json"
    proc = sealq(made.env, "keys", "publish", "--out", str(out))
    assert f"wrote 2 key(s) to {out}" in proc.stderr
    return dict(json.loads(out.read_text()))


def test_published_jwks_is_public_only(published: dict[str, Any], made: Made) -> None:
    assert {k["kid"] for k in published["keys"]} == set(made.kids.values())
    for jwk in published["keys"]:
        assert jwk["use"] == "enc"
        assert isinstance(jwk["exp"], int) and isinstance(jwk["nbf"], int)
        assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
    assert "wrapped" not in json.dumps(published)


@pytest.mark.parametrize("spec", ["ECC_NIST_P256", "RSA_4096"])
def test_jose_libraries_seal_to_published_keys_and_sealq_opens(
    spec: str, made: Made, published: dict[str, Any], kms: Any
) -> None:
    kid = made.kids[spec]
    alg = "ECDH-ES+A256KW" if spec.startswith("ECC") else "RSA-OAEP-256"
    header = {"alg": alg, "enc": "A256GCM", "kid": kid}

    jc_public = jc_jwk.JWKSet.from_json(json.dumps(published)).get_key(kid)
    jc_token = jc_jwe.JWE(MESSAGE, protected=json.dumps(header))
    jc_token.add_recipient(jc_public)

    key_set = KeySet.import_key_set(published)  # type: ignore[arg-type]
    rfc_public = key_set.get_by_kid(kid)
    rfc_token = rfc_jwe.encrypt_compact(header, MESSAGE, rfc_public, registry=_RFC_REGISTRY)

    opening = unwrap_kid(kms, made.keyset, kid)  # one kms:Decrypt, as a worker would
    assert opening.alg.value == alg
    assert open_token(jc_token.serialize(compact=True), opening) == MESSAGE
    assert open_token(rfc_token, opening) == MESSAGE


@pytest.mark.parametrize("spec", ["ECC_NIST_P256", "RSA_4096"])
def test_sealq_seals_to_published_keys_and_jose_libraries_open(
    spec: str, made: Made, published: dict[str, Any], kms: Any
) -> None:
    kid = made.kids[spec]
    sealing = next(k for k in parse_jwks(published) if k.kid == kid)
    token = seal(MESSAGE, sealing)
    pem = private_pem(unwrap_kid(kms, made.keyset, kid))

    jc_token = jc_jwe.JWE()
    jc_token.deserialize(token.decode(), key=jc_jwk.JWK.from_pem(pem))
    assert jc_token.payload == MESSAGE

    result = rfc_jwe.decrypt_compact(token, _rfc_private(pem, spec), registry=_RFC_REGISTRY)
    assert result.plaintext == MESSAGE
    assert result.protected["kid"] == kid


def _rfc_private(pem: bytes, spec: str) -> Any:
    from joserfc.jwk import ECKey, RSAKey

    return (ECKey if spec.startswith("ECC") else RSAKey).import_key(pem)


# --- export-pem and the openssl recipe ----------------------------------------------------


def _openssl_encrypt(pem: Path, message: bytes, *oaep: str) -> bytes:
    proc = subprocess.run(
        ["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pem), *oaep],
        input=message,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return base64.b64encode(proc.stdout)


OAEP_SHA256 = (
    "-pkeyopt",
    "rsa_padding_mode:oaep",
    "-pkeyopt",
    "rsa_oaep_md:sha256",
    "-pkeyopt",
    "rsa_mgf1_md:sha256",
)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_export_pem_works_with_the_openssl_recipe(made: Made, kms: Any, tmp_path: Path) -> None:
    kid = made.kids["RSA_4096"]
    pem = tmp_path / "public.pem"
    sealq(made.env, "keys", "export-pem", kid, "--out", str(pem))
    assert pem.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    # stdout form is the same key
    assert sealq(made.env, "keys", "export-pem", kid).stdout == pem.read_text()

    opening = unwrap_kid(kms, made.keyset, kid)
    shell_message = b"hello from a shell client"
    body = _openssl_encrypt(pem, shell_message, *OAEP_SHA256)
    assert open_raw(body, opening) == shell_message
    assert open_raw(body.decode() + "\n", opening) == shell_message  # `base64` adds newlines

    # openssl's default padding is PKCS#1 v1.5: never attempted, always refused.
    v15 = _openssl_encrypt(pem, shell_message)
    with pytest.raises(OpenError) as info:
        open_raw(v15, opening)
    assert info.value.reason is Reason.DECRYPT_FAILED


# --- expire, tampering, rotate ------------------------------------------------------------


def test_expire_erases_the_wrapped_key(own: Made, kms: Any) -> None:
    kid = own.kids["ECC_NIST_P256"]
    before = parse_keyset(own.keyset.read_bytes()).get(kid)
    blob = before.wrapped_private_key
    assert blob is not None
    unwrap(kms, before)  # works until expired

    proc = sealq(own.env, "keys", "expire", kid)
    assert proc.stdout.strip() == f"expired {kid}: wrapped private key erased"

    text = own.keyset.read_text()
    assert blob not in text
    after = parse_keyset(text.encode()).get(kid)
    assert after.state == "expired"
    assert after.wrapped_private_key is None
    assert after.shredded_at is not None
    with pytest.raises(KeyShreddedError, match=kid):
        unwrap(kms, after)

    listed = {k["kid"]: k for k in json.loads(sealq(own.env, "keys", "list", "--json").stdout)["keys"]}
    assert listed[kid]["status"] == "expired"
    assert listed[kid]["private_key"] == "erased"
    jwks = json.loads(sealq(own.env, "keys", "publish").stdout)
    assert [k["kid"] for k in jwks["keys"]] == [own.kids["RSA_4096"]]


def test_editing_expiry_in_the_keyset_makes_kms_refuse(own: Made, kms: Any) -> None:
    kid = own.kids["ECC_NIST_P256"]
    document = json.loads(own.keyset.read_text())
    (entry,) = [k for k in document["keys"] if k["kid"] == kid]
    assert entry["state"] == "active"
    entry["expires_at"] = "2099-01-01T00:00:00Z"  # someone tries to extend the key's life
    own.keyset.write_text(json.dumps(document))

    edited = parse_keyset(own.keyset.read_bytes()).get(kid)
    with pytest.raises(ClientError) as info:
        unwrap(kms, edited)
    assert info.value.response["Error"]["Code"] == "InvalidCiphertextException"
    # the untouched key in the same file still unwraps
    unwrap_kid(kms, own.keyset, own.kids["RSA_4096"])


def test_rotate_makes_the_next_key_like_the_current_one(
    standin: StandIn, cmk: str, kms: Any, tmp_path: Path
) -> None:
    env = cli_env(standin, tmp_path)
    first = sealq(env, "keys", "create", "--cmk", cmk, "--expires-in", "7d").stdout.strip()
    second = sealq(env, "keys", "rotate").stdout.strip()
    assert second != first and second.startswith("p256-")

    keyset = parse_keyset((tmp_path / "keyset.json").read_bytes())
    old, new = keyset.get(first), keyset.get(second)
    assert (new.key_spec, new.cmk_arn) == (old.key_spec, old.cmk_arn)
    assert new.expires_at - new.not_before == old.expires_at - old.not_before
    unwrap(kms, new)

    table = sealq(env, "keys", "list").stdout.splitlines()
    (current_row,) = [line for line in table if line.endswith(" *")]
    assert current_row.startswith(second)

    jwks = json.loads(sealq(env, "keys", "publish").stdout)
    assert {k["kid"] for k in jwks["keys"]} == {first, second}
    assert choose_key(parse_jwks(jwks), time.time()).kid == second


def test_rotate_without_a_current_key_says_what_to_give(standin: StandIn, tmp_path: Path) -> None:
    env = cli_env(standin, tmp_path)
    (tmp_path / "keyset.json").write_text('{"format": "sealq-keyset/1", "keys": []}')
    proc = sealq(env, "keys", "rotate", check=False)
    assert proc.returncode == 1
    assert "give --cmk, --spec and --expires-in" in proc.stderr


# --- keyset in S3 -------------------------------------------------------------------------


def test_keyset_in_s3(standin: StandIn, cmk: str, kms: Any, tmp_path: Path) -> None:
    s3 = standin_client(standin, "s3")
    bucket = f"sealq-keys-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/team/keyset.json"
    env = cli_env(standin, tmp_path, SEALQ_KEYSET=url)

    kid = sealq(env, "keys", "create", "--cmk", cmk, "--expires-in", "1d").stdout.strip()
    stored = s3.get_object(Bucket=bucket, Key="team/keyset.json")["Body"].read()
    record = parse_keyset(stored).get(kid)
    unwrap(kms, record)

    listed = json.loads(sealq(env, "keys", "list", "--json").stdout)["keys"]
    assert [k["kid"] for k in listed] == [kid]
    jwks = tmp_path / "jwks.json"
    sealq(env, "keys", "publish", "--out", str(jwks), "--keyset", url)
    assert [k.kid for k in parse_jwks(jwks.read_bytes())] == [kid]


# --- errors: one line, what to fix, non-zero, no traceback ---------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sealq")
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.fixture(scope="module")
def good_jwks(published: dict[str, Any], made: Made) -> Path:
    path = made.home / "good-jwks.json"
    path.write_text(json.dumps(published))
    return path


def _error_cases(
    made: Made, good_jwks: Path, queue: str
) -> dict[str, tuple[list[str], dict[str, str | None], str]]:
    home = made.home
    (home / "keys5.json").write_text('{"keys": 5}')
    (home / "notjson.json").write_text("this is not json\n")
    (home / "corrupt-keyset.json").write_text('{"format": "sealq-keyset/1", "keys": [{}]}')
    ecc = made.kids["ECC_NIST_P256"]
    return {
        "list-missing-keyset": (
            ["keys", "list", "--keyset", "/nonexistent/ks.json"],
            {},
            "no keyset at /nonexistent/ks.json; create one with `sealq keys create",
        ),
        "list-no-keyset": (["keys", "list"], {"SEALQ_KEYSET": None}, "--keyset"),
        "create-no-keyset": (
            ["keys", "create", "--cmk", made.cmk, "--expires-in", "1d"],
            {"SEALQ_KEYSET": None},
            "SEALQ_KEYSET",
        ),
        "list-corrupt-keyset": (
            ["keys", "list", "--keyset", str(home / "corrupt-keyset.json")],
            {},
            "is not a valid sealq keyset: keys.0.kid",
        ),
        "rotate-missing-keyset": (
            ["keys", "rotate", "--keyset", str(home / "absent.json")],
            {},
            "no keyset at",
        ),
        "publish-missing-keyset": (
            ["keys", "publish", "--keyset", str(home / "absent.json")],
            {},
            "no keyset at",
        ),
        "export-pem-unknown-kid": (["keys", "export-pem", "nope-kid"], {}, "no key 'nope-kid'"),
        "export-pem-bad-kid": (["keys", "export-pem", "../etc"], {}, "no key '../etc'"),
        "expire-unknown-kid": (["keys", "expire", "nope-kid"], {}, "`sealq keys list` shows"),
        "export-pem-unwritable-out": (
            ["keys", "export-pem", ecc, "--out", "/nonexistent/dir/k.pem"],
            {},
            "cannot write /nonexistent/dir/k.pem",
        ),
        "create-unknown-cmk": (
            ["keys", "create", "--cmk", "no-such-cmk", "--expires-in", "1d"],
            {"SEALQ_KEYSET": str(home / "unused.json")},
            "check --cmk 'no-such-cmk'",
        ),
        "create-bad-expires-in": (
            ["keys", "create", "--cmk", made.cmk, "--expires-in", "30 days"],
            {},
            "--expires-in: invalid duration '30 days': use e.g. 30d",
        ),
        "create-zero-expires-in": (
            ["keys", "create", "--cmk", made.cmk, "--expires-in", "0d"],
            {},
            "--expires-in",
        ),
        "create-bad-spec": (
            ["keys", "create", "--cmk", made.cmk, "--spec", "ECC_SECG_P256K1", "--expires-in", "1d"],
            {},
            "--spec: unknown key spec 'ECC_SECG_P256K1'; choose one of ECC_NIST_P256",
        ),
        "create-missing-cmk": (["keys", "create", "--expires-in", "1d"], {}, "--cmk"),
        "send-jwks-keys-not-array": (
            ["send", "--queue-url", queue, "--jwks", str(home / "keys5.json")],
            {},
            'JWKS must be a JSON object with a "keys" array',
        ),
        "send-jwks-not-json": (
            ["send", "--queue-url", queue, "--jwks", str(home / "notjson.json")],
            {},
            "JWKS is not valid JSON",
        ),
        "send-jwks-missing": (
            ["send", "--queue-url", queue, "--jwks", str(home / "absent-jwks.json")],
            {},
            "cannot read JWKS file",
        ),
        "send-nonexistent-queue": (
            ["send", "--queue-url", queue, "--jwks", str(good_jwks)],
            {},
            "check the queue URL",
        ),
        "send-missing-file": (
            ["send", "--queue-url", queue, "--jwks", str(good_jwks), "--file", "/nonexistent/m"],
            {},
            "cannot read --file /nonexistent/m",
        ),
    }


ERROR_CASES = [
    "list-missing-keyset",
    "list-no-keyset",
    "create-no-keyset",
    "list-corrupt-keyset",
    "rotate-missing-keyset",
    "publish-missing-keyset",
    "export-pem-unknown-kid",
    "export-pem-bad-kid",
    "expire-unknown-kid",
    "export-pem-unwritable-out",
    "create-unknown-cmk",
    "create-bad-expires-in",
    "create-zero-expires-in",
    "create-bad-spec",
    "create-missing-cmk",
    "send-jwks-keys-not-array",
    "send-jwks-not-json",
    "send-jwks-missing",
    "send-nonexistent-queue",
    "send-missing-file",
]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_bad_input_gives_one_line_error(case: str, made: Made, good_jwks: Path, standin: StandIn) -> None:
    queue = f"{standin.endpoint_url}/000000000000/no-such-queue-{uuid.uuid4().hex[:8]}"
    args, overrides, expected = _error_cases(made, good_jwks, queue)[case]
    env = dict(made.env)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    before = made.keyset.read_bytes()
    proc = sealq(env, *args, stdin=b"one line\n", check=False)
    assert_one_line_error(proc, expected)
    assert made.keyset.read_bytes() == before  # a failed command changes nothing


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "create", "--cmk", "any", "--expires-in", "1d"],
        ["send", "--queue-url", "http://127.0.0.1:1/000000000000/q", "--jwks", "JWKS"],
    ],
    ids=["keys-create", "send"],
)
def test_unreachable_endpoint_fails_fast_with_one_line(
    args: list[str], made: Made, good_jwks: Path, tmp_path: Path
) -> None:
    port = closed_port()
    env = dict(
        made.env,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        SEALQ_KEYSET=str(tmp_path / "ks.json"),
    )
    args = [str(good_jwks) if a == "JWKS" else a for a in args]
    started = time.monotonic()
    proc = sealq(env, *args, stdin=b"hello\n", check=False)
    elapsed = time.monotonic() - started
    assert_one_line_error(proc, f"cannot reach http://127.0.0.1:{port}", "AWS_ENDPOINT_URL")
    assert elapsed < 6, f"took {elapsed:.1f}s to give up on a closed port"
    assert not (tmp_path / "ks.json").exists()
