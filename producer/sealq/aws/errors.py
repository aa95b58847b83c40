"""One place that reads botocore failures: their codes, whether retrying can help, and a
one-line message a user can act on."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

AwsError = (BotoCoreError, ClientError)
KMS_PERMANENT = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})
"""KMS saying the wrapped key or its EncryptionContext is wrong: retrying cannot help."""
KMS_MISCONFIGURED = frozenset(
    {"NotFoundException", "DisabledException", "KMSInvalidStateException", "AccessDeniedException"}
)
"""KMS saying the CMK is missing, disabled, pending deletion or denied to us: retrying helps
only once an operator fixes it (unlike throttling or an outage, which pass by themselves)."""
S3_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
"""S3 saying the object (or its bucket) is not there: an offloaded payload that is gone."""
S3_MISCONFIGURED = frozenset(
    {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidObjectState", "KMS.DisabledException"}
)
"""S3 refusing us the object (IAM, bucket policy, an archived object, its SSE-KMS key): only
an operator can fix it. Any other failure (SlowDown, 5xx, timeouts) passes by itself."""
_NO_QUEUE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, else the exception's type name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def describe_aws_error(exc: BaseException, action: str) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "error"))
        text = f"{action} failed: {code}: {err.get('Message', '')}".rstrip(": ")
        if code in _NO_QUEUE_CODES:
            text += "; check the queue URL (and AWS_DEFAULT_REGION / AWS_ENDPOINT_URL)"
        return _one_line(text)
    if isinstance(exc, EndpointConnectionError):
        return (
            f"{action} failed: cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}; "
            "check AWS_ENDPOINT_URL / AWS_DEFAULT_REGION and the network"
        )
    if isinstance(exc, NoRegionError):
        return f"{action} failed: no AWS region; set AWS_DEFAULT_REGION (or AWS_REGION)"
    if isinstance(exc, NoCredentialsError):
        return f"{action} failed: no AWS credentials; configure the standard AWS credential chain"
    return _one_line(f"{action} failed: {exc}")


def _one_line(text: str) -> str:
    """Service messages may carry newlines; a CLI error is one line."""
    return " ".join(text.split())
