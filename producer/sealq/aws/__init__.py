"""Talking to AWS: clients built one way (bounded retries and timeouts), error codes read
one way, and SQS's limits in one place."""

from sealq.aws.clients import aio_client_config, client, client_config
from sealq.aws.errors import AwsError, describe_aws_error, error_code
from sealq.aws.limits import (
    SQS_MAX_ATTRIBUTES,
    SQS_MAX_BATCH_BYTES,
    SQS_MAX_BATCH_ENTRIES,
    SQS_MAX_MESSAGE_BYTES,
    attributes_size,
    entry_size,
    message_size,
)

__all__ = [
    "SQS_MAX_ATTRIBUTES",
    "SQS_MAX_BATCH_BYTES",
    "SQS_MAX_BATCH_ENTRIES",
    "SQS_MAX_MESSAGE_BYTES",
    "AwsError",
    "aio_client_config",
    "attributes_size",
    "client",
    "client_config",
    "describe_aws_error",
    "entry_size",
    "error_code",
    "message_size",
]
