"""Integration fixtures: one local AWS stand-in (ministack) per test session.

The stand-in's venv is built on first use (needs pip access to PyPI once); it
lives in $SEALQ_STANDIN_HOME, else <repo>/.emu (git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealq.demo.standin import HOME_ENV, StandIn
from tests.integration.cli_helpers import CLEARED_ENV

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration, so `-m "not integration"` skips them."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


def standin_home() -> Path:
    configured = os.environ.get(HOME_ENV)
    return Path(configured).expanduser() if configured else REPO / ".emu"


@pytest.fixture(scope="session")
def standin() -> Iterator[StandIn]:
    """A running stand-in shared by the whole session; tests use unique resource names."""
    instance = StandIn(standin_home())
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


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
