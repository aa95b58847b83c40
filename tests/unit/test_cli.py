"""The CLI's wiring: run's flags come from the settings model, no environment is read while
a parser is built, and a missing extra is one line naming it."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealq.cli.main import build_parser, main
from sealq.cli.run import flag_help
from sealq.errors import MissingExtraError
from sealq.extras import EXTRAS, require
from sealq.worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[2]

# The flags `sealq run` had before they were generated: names and meanings are a contract.
RUN_FLAGS = {
    "queue-url": str,
    "dlq-url": str,
    "keyset": str,
    "allowed-cmk-arns": str,
    "handler": str,
    "concurrency": int,
    "processes": int,
    "pollers": int,
    "max-pollers": int,
    "max-in-flight": int,
    "wait-time-s": int,
    "visibility-timeout-s": int,
    "heartbeat-s": float,
    "handler-timeout-s": float,
    "max-attempts": int,
    "backoff-base-s": float,
    "backoff-max-s": float,
    "shutdown-grace-s": float,
    "key-grace-s": int,
    "keyset-refresh-s": float,
    "crypto-threads": int,
    "payload-buckets": str,
    "max-payload-bytes": int,
    "payload-fetches": int,
    "keep-payloads": None,  # a switch: --keep-payloads / --no-keep-payloads
    "metrics-port": int,
    "metrics-host": str,
    "log-level": str,
    "log-format": str,
}


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]  # type: ignore[no-any-return]
    raise AssertionError("no subcommands")


def _run_options() -> dict[str, argparse.Action]:
    run = _subparser(build_parser(run_flags=True), "run")
    return {a.option_strings[0][2:]: a for a in run._actions if a.option_strings and a.dest != "help"}


def test_run_flags_are_the_settings_fields_with_their_old_names_and_types() -> None:
    options = _run_options()
    assert {name: action.type for name, action in options.items()} == RUN_FLAGS
    assert set(options) == {n.replace("_", "-") for n in WorkerSettings.model_fields}
    assert all(action.default is None for action in options.values())  # env and model decide


def test_run_flag_help_is_the_description_and_the_model_default() -> None:
    options = _run_options()
    assert options["concurrency"].help == "handler calls at once, per process (default 16)"
    assert options["heartbeat-s"].help == "extend running handlers this often (default 20)"
    assert options["crypto-threads"].help == "threads for decryption (default: CPU count)"
    assert options["metrics-port"].help == "serve /healthz, /readyz and /metrics on this port (default: off)"
    assert options["queue-url"].help == "SQS queue to consume"
    assert options["pollers"].help.endswith("(default: adaptive)")
    for name, field in WorkerSettings.model_fields.items():
        assert field.description, f"{name} needs a description: it is the flag's help"
        assert options[name.replace("_", "-")].help == flag_help(field).replace("%", "%%")


def test_run_help_renders(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--visibility-timeout-s" in out and "(default 60)" in out


def test_a_flag_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALQ_CONCURRENCY", "3")
    seen: dict[str, Any] = {}
    monkeypatch.setattr("sealq.worker.app.run", lambda settings: seen.setdefault("s", settings) and 0)
    base = ["run", "--queue-url", "q", "--dlq-url", "d", "--keyset", "k", "--handler", "m:f"]
    assert main(base) == 0
    assert seen.pop("s").concurrency == 3
    assert main([*base, "--concurrency", "5"]) == 0
    assert seen["s"].concurrency == 5


class Tripwire(dict[str, str]):
    """An os.environ that fails on any read of a SEALQ_* variable or of the whole environment
    (argparse itself may look up COLUMNS: that is not ours)."""

    def _check(self, key: object) -> None:
        if str(key).startswith("SEALQ_"):
            raise AssertionError(f"{key} read while building the parser")

    def __getitem__(self, key: str) -> str:
        self._check(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._check(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._check(key)
        return super().__contains__(key)

    def _whole(self, *args: object) -> Any:
        raise AssertionError("the whole environment read while building the parser")

    __iter__ = keys = items = values = copy = _whole  # type: ignore[assignment]


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import sealq.worker.app  # noqa: F401 - import-time env reads of libraries are not ours

    monkeypatch.setattr(os, "environ", Tripwire(SEALQ_KEYSET="k", SEALQ_METRICS_PORT="abc", COLUMNS="100"))
    yield


@pytest.mark.usefixtures("tripwire")
def test_no_environment_is_read_while_a_parser_is_built() -> None:
    build_parser()
    build_parser(run_flags=True)


def test_the_tripwire_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", Tripwire(SEALQ_KEYSET="k"))
    with pytest.raises(AssertionError, match="SEALQ_KEYSET read"):
        os.environ.get("SEALQ_KEYSET")
    assert os.environ.get("COLUMNS") is None


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SEALQ_")} | env
    return subprocess.run(
        [sys.executable, "-m", "sealq.cli", *args], env=full, capture_output=True, text=True, timeout=60
    )


def test_a_bad_metrics_port_variable_does_not_break_other_commands(tmp_path: Path) -> None:
    proc = _cli("keys", "list", "--keyset", str(tmp_path / "X"), SEALQ_METRICS_PORT="abc")
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("sealq: error: no keyset at "), proc.stderr


def test_keys_reads_sealq_keyset_when_it_runs(tmp_path: Path) -> None:
    proc = _cli("keys", "list", SEALQ_KEYSET=str(tmp_path / "from-env.json"))
    assert proc.returncode == 1 and f"no keyset at {tmp_path / 'from-env.json'}" in proc.stderr


def test_health_names_a_bad_metrics_port_variable_in_one_line() -> None:
    proc = _cli("health", SEALQ_METRICS_PORT="abc")
    assert proc.returncode == 1
    assert proc.stderr == (
        "sealq: error: SEALQ_METRICS_PORT='abc' is not a port; set it to a number from 1 to 65535 "
        "or pass --port\n"
    )


# ----- extras ---------------------------------------------------------------------------------


def _without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make `modules` look uninstalled (a None entry in sys.modules hides an installed one)."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_require_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    require("worker", "sealq run")  # installed here: no error
    _without(monkeypatch, "pydantic_settings")
    with pytest.raises(MissingExtraError) as info:
        require("worker", "sealq run")
    assert str(info.value) == "sealq run needs the worker extra: pip install 'sealq[worker]'"
    assert info.value.missing == ("pydantic_settings",)
    assert isinstance(info.value, ImportError)


def test_extras_match_pyproject() -> None:
    import re
    import tomllib

    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        distributions = {re.split(r"[<>=\[ ]", d)[0].replace("-", "_") for d in optional[extra]}
        assert distributions == set(modules), extra


def test_async_producer_without_aiobotocore(monkeypatch: pytest.MonkeyPatch) -> None:
    from sealq.producer import AsyncProducer

    _without(monkeypatch, "aiobotocore")
    with pytest.raises(
        MissingExtraError, match=r"AsyncProducer needs the async extra: pip install 'sealq\[async\]'"
    ):
        AsyncProducer("https://queue", {"keys": []})
    AsyncProducer("https://queue", {"keys": []}, sqs_client=object())  # a client of your own is fine


@pytest.mark.parametrize(
    ("argv", "hidden", "feature"),
    [
        (["run", "--queue-url", "q"], "pydantic_settings", "sealq run"),
        (["run", "--help"], "aiobotocore", "sealq run"),
        (["keys", "list", "--keyset", "k.json"], "pydantic", "sealq keys"),
        (["keys", "create", "--cmk", "c", "--expires-in", "1d"], "pydantic", "sealq keys"),
        (["demo"], "prometheus_client", "sealq demo"),
        (["health"], "prometheus_client", "sealq health"),
    ],
)
def test_a_command_without_its_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    hidden: str,
    feature: str,
) -> None:
    _without(monkeypatch, hidden)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == f"sealq: error: {feature} needs the worker extra: pip install 'sealq[worker]'\n"
