"""Secrets out of everything a run writes.

>>> scrub({"auth": "hunter2-pass"}, ["hunter2-pass"])
{'auth': '<redacted>'}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"


def scrub(obj: Any, secrets: Iterable[str]) -> Any:
    """A copy of ``obj`` in which every occurrence of a secret string is redacted."""
    secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)
    if not secrets:
        return obj

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(obj)
