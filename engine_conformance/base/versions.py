"""Engine API versions: the one parser, the suite's default, the range check.

>>> version_tuple("1.41") < version_tuple("1.44")
True
"""

from __future__ import annotations

import re

from engine_conformance.base.exits import UsageError

SPEC_VERSION = "1.44"
"""The API version the suite negotiates up to by default (its fragment's version)."""

API_VERSION = re.compile(r"^\d+\.\d+$")


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.41"`` -> ``(1, 41)``; raises UsageError on junk."""
    try:
        return tuple(int(part) for part in version.strip().split("."))
    except ValueError:
        raise UsageError(f"not an API version: {version!r} (expected e.g. 1.41)") from None


def api_version_problem(pinned: str, engine_min: str | None, engine_max: str | None) -> str | None:
    """Why ``--api-version pinned`` cannot be judged on this engine, or None.

    >>> api_version_problem("abc", None, None)
    '--api-version abc is not an API version (like 1.41)'
    >>> api_version_problem("9.99", "1.12", "1.41")
    '--api-version 9.99 is outside the API versions the engine serves (1.12 to 1.41)'
    """
    if not API_VERSION.match(pinned):
        return f"--api-version {pinned} is not an API version (like 1.41)"
    low = engine_min if engine_min and API_VERSION.match(engine_min) else None
    high = engine_max if engine_max and API_VERSION.match(engine_max) else None
    pin = version_tuple(pinned)
    if (low and pin < version_tuple(low)) or (high and pin > version_tuple(high)):
        return (
            f"--api-version {pinned} is outside the API versions the engine serves "
            f"({low or '?'} to {high or '?'})"
        )
    return None
