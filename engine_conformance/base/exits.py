"""Exit statuses and refusals: what the command and the child run end with.

    >>> raise Refusal("bad target: no such socket", EXIT_USAGE)   # doctest: +SKIP

The command's own statuses (``EXIT_*``), pytest's (``PYTEST_*``, named here without
importing pytest) and the child pytest's beyond pytest's 0-5 (``CHILD_*``): the
plugin's refusals must never read as pytest's INTERNAL_ERROR (3) or USAGE_ERROR (4).
"""

from __future__ import annotations

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NO_ENGINE, EXIT_HARNESS = 0, 1, 2, 3, 4, 5
EXIT_SUITE_UNREACHABLE = 6
EXIT_INTERRUPTED = 130

PYTEST_INTERRUPTED, PYTEST_INTERNAL_ERROR, PYTEST_USAGE_ERROR, PYTEST_NO_TESTS = 2, 3, 4, 5

CHILD_USAGE = 64  # a bad option or target (sysexits EX_USAGE)
CHILD_TARGET_UNREACHABLE = 68  # the engine could not be reached (EX_NOHOST)
CHILD_SUITE_UNREACHABLE = 69  # the engine could not reach the lab registry or file server


class Refusal(Exception):
    """One line for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class UsageError(Exception):
    """A target or option given by the user does not make sense."""
