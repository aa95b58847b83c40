"""How sealq's AWS clients are configured: bounded retries and timeouts, env still wins."""

from __future__ import annotations

import pytest

from sealq.aws import clients as aws


@pytest.fixture(autouse=True)
def _no_retry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)


def test_default_config_bounds_retries_and_connect_time() -> None:
    config = aws.client_config()
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert config.connect_timeout == 5.0
    assert config.read_timeout > 20  # longer than an SQS long poll


@pytest.mark.parametrize("name", ["AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"])
def test_standard_retry_settings_from_the_environment_win(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "10" if name == "AWS_MAX_ATTEMPTS" else "adaptive")
    assert aws.client_config().retries is None
    assert aws.aio_client_config().retries is None


def test_client_uses_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    client = aws.client("sqs")
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.connect_timeout == 5.0
    assert client.meta.config.retries["total_max_attempts"] == 3


def test_missing_region_says_which_variable_to_set() -> None:
    from botocore.exceptions import NoRegionError

    from sealq.aws.errors import describe_aws_error

    message = describe_aws_error(NoRegionError(), "SendMessage")
    assert "AWS_DEFAULT_REGION" in message and "\n" not in message
