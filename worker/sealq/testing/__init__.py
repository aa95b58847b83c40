"""Test kit: an in-memory SQS that keeps AWS's rules, a fake KMS, and helpers."""
