"""The SQS message attributes that are part of sealq's wire contract.

Attributes are not authenticated: a worker trusts `key-id` only as far as it equals the
sealed header's `kid`, and treats the rest as labels.
"""

ATTR_KEY_ID = "key-id"
"""The kid the body is sealed to; must equal the JWE header's `kid`."""
ATTR_CLIENT_ID = "client-id"
"""Who sent it, as the sender says: shown to operators in the DLQ tools."""
ATTR_CONTENT_TYPE = "content-type"
ATTR_FORMAT = "sealq-format"
"""Absent for JWE; names the seed's raw RSA-OAEP mode otherwise."""
ATTR_REASON = "sealq-reason"
"""Set by the worker on every dead-lettered copy."""
ATTR_DETAIL = "sealq-detail"
"""Short, secret-free detail beside the reason, when there is room."""
SEALQ_ATTRIBUTES = frozenset({ATTR_REASON, ATTR_DETAIL})
"""What dead-lettering adds; removed again on redrive."""
