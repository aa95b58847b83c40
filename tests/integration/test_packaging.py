"""sealq as a user installs it: a built wheel in a clean venv without extras, next to a user
project with its own `worker.py` and `producer.py`; and which modules each command loads.

The wheel's venv is built once per module (venv + pip install of the base dependencies,
from the pip cache when it has them): it is the slow part.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sealq.demo.standin import StandIn
from sealq.envelope.attributes import ATTR_KEY_ID, ATTR_REASON
from sealq.envelope.jwe import OpeningKey, open_token
from tests.integration.cli_helpers import cli_env, sealq, standin_client, unwrap_kid
from tests.integration.test_worker_e2e import (
    Setup,
    setup,  # noqa: F401 - the fixture, used through request.getfixturevalue
    wait_for,
    worker_process,
)

REPO = Path(__file__).resolve().parents[2]
EXTRA_ONLY = ("aiobotocore", "pydantic", "pydantic-settings", "prometheus-client")
WORKER_EXTRA_LINE = "sealq: error: sealq run needs the worker extra: pip install 'sealq[worker]'\n"


# ----- a client's install: the wheel alone ---------------------------------------------------


@dataclass
class ClientVenv:
    wheel: Path
    python: Path
    sealq: Path
    distributions: set[str]


def _clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH (the dev checkout must not leak in) and no SEALQ_* settings."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SEALQ_")}
    return env | extra


def _run(args: list[Any], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=kwargs.pop("timeout", 600), **kwargs
    )


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> ClientVenv:
    work = tmp_path_factory.mktemp("wheel")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", REPO], cwd=work
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("sealq-*.whl")
    venv = work / "venv"
    made = _run([sys.executable, "-m", "venv", venv], env=_clean_env())
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run([python, "-m", "pip", "install", "-q", wheel], env=_clean_env(), cwd=work)
    assert installed.returncode == 0, installed.stderr[-3000:]
    listed = _run([python, "-m", "pip", "list", "--format=json"], env=_clean_env(), cwd=work)
    names = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}
    return ClientVenv(wheel, python, venv / "bin" / "sealq", names)


def test_the_wheel_installs_one_import_name(client_venv: ClientVenv) -> None:
    with zipfile.ZipFile(client_venv.wheel) as wheel:
        names = wheel.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        top_level = f"{info}/top_level.txt"
        if top_level in names:
            assert wheel.read(top_level).decode().split() == ["sealq"]
        record = wheel.read(f"{info}/RECORD").decode().splitlines()
    paths = [line.split(",")[0] for line in record if line]
    assert {p.split("/")[0] for p in paths} == {"sealq", info}
    assert "sealq/__init__.py" not in paths  # a namespace package, like the source tree
    # Both source roots made it in.
    assert {"sealq/envelope/jwe.py", "sealq/producer/sync_producer.py", "sealq/worker/app.py"} <= set(paths)
    assert {"sealq/cli/main.py", "sealq/keys/store.py", "sealq/errors.py", "sealq/extras.py"} <= set(paths)


def test_the_base_install_pulls_no_extra(client_venv: ClientVenv) -> None:
    assert {"sealq", "boto3", "cryptography"} <= client_venv.distributions
    assert client_venv.distributions.isdisjoint(EXTRA_ONLY)


def test_the_base_install_seals_and_sends(client_venv: ClientVenv, standin: StandIn, tmp_path: Path) -> None:
    """The operator (dev venv) creates and publishes a key; the client venv sends to it."""
    env = cli_env(standin, tmp_path)
    kms = standin_client(standin, "kms")
    cmk = kms.create_key()["KeyMetadata"]["KeyId"]
    kid = sealq(env, "keys", "create", "--cmk", cmk, "--expires-in", "1d").stdout.strip()
    jwks = tmp_path / "jwks.json"
    sealq(env, "keys", "publish", "--out", str(jwks))
    sqs = standin_client(standin, "sqs")
    queue = sqs.create_queue(QueueName=f"sealq-pkg-{uuid.uuid4().hex[:10]}")["QueueUrl"]

    client_env = _clean_env(**standin.env())
    client_env["AWS_CONFIG_FILE"] = env["AWS_CONFIG_FILE"]
    client_env["AWS_SHARED_CREDENTIALS_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"]
    sent = _run(
        [client_venv.sealq, "send", "--queue-url", queue, "--jwks", jwks, "--json"],
        input="first\nsecond\n",
        env=client_env,
        cwd=tmp_path,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) == {"sent": 2, "failed": []}

    opening: OpeningKey = unwrap_kid(kms, tmp_path / "keyset.json", kid)
    bodies: list[dict[str, Any]] = []
    for _ in range(5):
        if len(bodies) >= 2:
            break
        bodies += sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages", [])
    assert {m["MessageAttributes"][ATTR_KEY_ID]["StringValue"] for m in bodies} == {kid}
    assert sorted(open_token(m["Body"], opening) for m in bodies) == [b"first", b"second"]


def test_the_base_install_names_the_missing_extra(client_venv: ClientVenv, tmp_path: Path) -> None:
    env = _clean_env()
    run = _run(
        [client_venv.sealq, "run", "--queue-url", "q", "--dlq-url", "d", "--keyset", "k", "--handler", "m:f"],
        env=env,
        cwd=tmp_path,
    )
    assert (run.returncode, run.stderr, run.stdout) == (1, WORKER_EXTRA_LINE, "")
    keys = _run([client_venv.sealq, "keys", "list", "--keyset", tmp_path / "k.json"], env=env, cwd=tmp_path)
    assert (keys.returncode, keys.stderr) == (
        1,
        "sealq: error: sealq keys needs the worker extra: pip install 'sealq[worker]'\n",
    )
    helped = _run([client_venv.sealq, "--help"], env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "dlq" in helped.stdout, helped.stderr
    code = (
        "from sealq.errors import MissingExtraError\n"
        "from sealq.producer import AsyncProducer, Producer\n"
        "try:\n"
        "    AsyncProducer('https://queue', {'keys': []})\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    for package in ("sealq.worker", "sealq.keys"):  # importing them names the extra too
        imported = _run([client_venv.python, "-c", f"import {package}"], env=env, cwd=tmp_path)
        assert imported.returncode == 1
        assert imported.stderr.splitlines()[-1] == (
            f"sealq.errors.MissingExtraError: {package} needs the worker extra: pip install 'sealq[worker]'"
        )
    sdk = _run([client_venv.python, "-c", code], env=env, cwd=tmp_path)
    assert (sdk.returncode, sdk.stdout) == (
        0,
        "AsyncProducer needs the async extra: pip install 'sealq[async]'\n",
    )


# ----- which modules a command loads -------------------------------------------------------------

PROBE = """
import json, os, sys
from sealq.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
with open(os.environ["MODULES_OUT"], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""
HEAVY = ("aiobotocore", "sealq.worker", "sealq.demo", "sealq.testing")
"""Never loaded by --help, keys, send or dlq: the pool, the demo, the stand-in, aiobotocore."""


def _loaded(env: dict[str, str], tmp_path: Path, *argv: str, stdin: str = "") -> tuple[object, list[str]]:
    out = tmp_path / f"modules-{uuid.uuid4().hex[:6]}.json"
    proc = _run(
        [sys.executable, "-c", PROBE, *argv], env=env | {"MODULES_OUT": str(out)}, input=stdin, timeout=60
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(out.read_text())
    return report["code"], report["modules"]


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.fixture
def operator(standin: StandIn, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A keyset with a real key, a published JWKS and a DLQ holding one dead letter."""
    env = cli_env(standin, tmp_path)
    kms, sqs = standin_client(standin, "kms"), standin_client(standin, "sqs")
    cmk = kms.create_key()["KeyMetadata"]["KeyId"]
    kid = sealq(env, "keys", "create", "--cmk", cmk, "--expires-in", "1d").stdout.strip()
    sealq(env, "keys", "publish", "--out", str(tmp_path / "jwks.json"))
    name = f"sealq-mods-{uuid.uuid4().hex[:10]}"
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    sqs.send_message(
        QueueUrl=dlq,
        MessageBody="sealed",
        MessageAttributes={
            ATTR_KEY_ID: {"DataType": "String", "StringValue": kid},
            ATTR_REASON: {"DataType": "String", "StringValue": "key-expired"},
        },
    )
    yield env | {"QUEUE": queue, "DLQ": dlq, "KID": kid}


def test_keys_list_loads_neither_the_worker_nor_aiobotocore(operator: dict[str, str], tmp_path: Path) -> None:
    code, modules = _loaded(operator, tmp_path, "keys", "list", "--json")
    assert code == 0
    assert "sealq.keys.store" in modules  # the command really ran
    assert _heavy(modules) == []


def test_dlq_stats_loads_neither_the_worker_nor_aiobotocore(operator: dict[str, str], tmp_path: Path) -> None:
    code, modules = _loaded(operator, tmp_path, "dlq", "stats", "--dlq-url", operator["DLQ"], "--json")
    assert code == 0
    assert "botocore.client" in modules  # it really talked to SQS
    assert _heavy(modules) == []


def test_send_loads_only_the_client_side(operator: dict[str, str], tmp_path: Path) -> None:
    jwks = str(tmp_path / "jwks.json")
    code, modules = _loaded(
        operator, tmp_path, "send", "--queue-url", operator["QUEUE"], "--jwks", jwks, stdin="a\n"
    )
    assert code == 0
    assert "sealq.producer.sync_producer" in modules
    assert _heavy(modules) == []
    assert [
        m for m in modules if m.split(".")[0] in {"pydantic", "pydantic_settings", "prometheus_client"}
    ] == []
    assert [m for m in modules if m.startswith("sealq.keys")] == []


def test_help_loads_nothing_heavy(tmp_path: Path) -> None:
    code, modules = _loaded(_clean_env(), tmp_path, "--help")
    assert code == 0
    assert "sealq.cli.main" in modules
    assert _heavy(modules) == []
    assert [
        m for m in modules if m.split(".")[0] in {"pydantic", "pydantic_settings", "prometheus_client"}
    ] == []


def test_the_probe_sees_heavy_modules(tmp_path: Path) -> None:
    """The checks above can fail: a command that does load the worker is seen doing so."""
    _code, modules = _loaded(_clean_env(), tmp_path, "run", "--help")
    assert "sealq.worker.pool" in _heavy(modules)


# ----- a user project with its own worker.py and producer.py ------------------------------------

USER_WORKER = """
import os

import producer  # the project's own module, not sealq's

assert producer.ORIGIN == "user project", producer

OUT = os.environ["E2E_HANDLED"]


async def handle(message):
    with open(OUT, "a") as f:
        f.write(message.text() + ":" + producer.ORIGIN + "\\n")
"""


def test_a_project_with_its_own_worker_and_producer_modules(request: pytest.FixtureRequest) -> None:
    s: Setup = request.getfixturevalue("setup")
    (s.tmp / "worker.py").write_text(USER_WORKER)
    (s.tmp / "producer.py").write_text('ORIGIN = "user project"\n')
    texts = [f"u{i}" for i in range(12)]
    s.send(texts)
    with worker_process(s, handler="worker:handle") as run:
        wait_for(lambda: len(s.handled_ids()) >= len(texts), 30, "the project's handler", run)
        assert run.stop() == 0, run.stderr[-3000:]
    assert sorted(s.handled_ids()) == sorted(f"{t}:user project" for t in texts)
    assert s.depth(s.dlq_url) == 0
