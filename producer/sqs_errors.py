"""One place that turns botocore failures into messages a user can act on."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

AwsError = (BotoCoreError, ClientError)


def describe_aws_error(exc: BaseException, action: str) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{action} failed: {err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
    if isinstance(exc, EndpointConnectionError):
        return (
            f"{action} failed: cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}; "
            "check AWS_ENDPOINT_URL / AWS_DEFAULT_REGION and the network"
        )
    if isinstance(exc, NoCredentialsError):
        return f"{action} failed: no AWS credentials; configure the standard AWS credential chain"
    return f"{action} failed: {exc}"
