"""Integration fixtures: one local AWS stand-in per backend per test session.

Every test that uses `standin` (directly or through another fixture) runs once per
backend: `test_x[ministack]` and `test_x[localstack]`. ministack is quick and lenient;
LocalStack follows AWS more closely (real KMS crypto, SQS size/attribute rules,
StartMessageMoveTask). `@pytest.mark.backends("ministack")` limits a test to the named
backends. The stand-ins' venvs are built on first use (pip access to PyPI once; LocalStack
needs a Python 3.13, see sealq.demo.standin_localstack); they live in $SEALQ_STANDIN_HOME,
else <repo>/.emu (git-ignored). Without Python 3.13 the LocalStack half is skipped,
except under CI=true, where it must run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealq.demo.standin import HOME_ENV, StandIn
from sealq.demo.standin_localstack import BACKENDS, ENABLE_HINT, find_python, open_standin
from tests.integration.cli_helpers import CLEARED_ENV

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run only against these stand-in backends")


# Tests about sealq itself rather than AWS's behaviour; they run on ministack only, as a
# second run would only add time (file name, or file::test).
ONE_BACKEND = {
    "test_packaging.py": "what a wheel installs and imports",
    "test_worker_e2e.py::test_demo_succeeds_and_its_logs_carry_no_secrets": "the demo runs its own ministack",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One run per backend for every test that needs the stand-in (ids `[ministack]`, `[localstack]`)."""
    if "standin" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = [b for b in BACKENDS if marker is None or b in marker.args]
    where = Path(metafunc.definition.path).name
    if where in ONE_BACKEND or f"{where}::{metafunc.function.__name__}" in ONE_BACKEND:
        names = ["ministack"]
    metafunc.parametrize("standin", names, indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration, so `-m "not integration"` skips them."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


def standin_home() -> Path:
    configured = os.environ.get(HOME_ENV)
    return Path(configured).expanduser() if configured else REPO / ".emu"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def standin(request: pytest.FixtureRequest) -> Iterator[StandIn]:
    """A running stand-in shared by the whole session; tests use unique resource names."""
    # A test that asks for it by name at run time (getfixturevalue) is not parametrized.
    backend: str = getattr(request, "param", "ministack")
    if backend == "localstack" and find_python() is None:
        message = f"{ENABLE_HINT} to run the LocalStack half of the integration tests."
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    instance = open_standin(backend, standin_home())
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def backend(standin: StandIn) -> str:
    """The name of the stand-in this test runs against."""
    return standin.backend


@pytest.fixture
def aws_env(standin: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """Point boto3/aiobotocore (default sessions) at the stand-in; yields the endpoint URL.

    The developer's ~/.aws files are hidden too, so a profile or configured
    endpoint there cannot redirect a test to real AWS.
    """
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name, value in standin.env().items():
        monkeypatch.setenv(name, value)
    yield standin.endpoint_url
