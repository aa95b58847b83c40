"""Optional extras, checked before use so a missing one is one line naming what to install.

The base install (boto3, cryptography) seals and sends. `sealq[async]` adds aiobotocore for
`AsyncProducer`; `sealq[worker]` adds what receiving, opening and managing keys need. The
check looks the modules up without importing them, so it costs nothing when they are there.
"""

from __future__ import annotations

from importlib.util import find_spec

from sealq.errors import MissingExtraError

EXTRAS: dict[str, tuple[str, ...]] = {
    "async": ("aiobotocore",),
    "worker": ("aiobotocore", "pydantic", "pydantic_settings", "prometheus_client"),
}
"""Each extra's top-level import names (pyproject.toml's optional-dependencies)."""


def missing(*modules: str) -> tuple[str, ...]:
    """The top-level modules among `modules` that cannot be imported."""
    absent = []
    for name in modules:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):  # a broken install counts as absent
            found = False
        if not found:
            absent.append(name)
    return tuple(absent)


def require(extra: str, feature: str, *modules: str) -> None:
    """Raise `MissingExtraError` unless `modules` (default: all of `extra`'s) are installed.

    `feature` names what needs them, as the user called it: "sealq run", "AsyncProducer".
    """
    absent = missing(*(modules or EXTRAS[extra]))
    if absent:
        raise MissingExtraError(feature, extra, absent)
