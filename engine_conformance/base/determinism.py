"""Repeatable Hypothesis draws, whatever else the process has imported.

    >>> with no_local_constants():                             # doctest: +SKIP
    ...     cases = draw_cases(seed=20_240_601)

Hypothesis sometimes draws string constants it found in the modules already
imported; which modules those are depends on test order, so without this the
same seed can give different cases. It uses a private Hypothesis API: if that
moves, generation still works, only less reproducibly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock


@contextmanager
def no_local_constants() -> Iterator[None]:
    """Draw without Hypothesis's constants from local modules."""
    try:
        from hypothesis.internal.conjecture import providers

        empty = providers.Constants()  # type: ignore[attr-defined]  # private: guarded below
        cache = providers.CONSTANTS_CACHE
        patch = mock.patch.object(providers, "_get_local_constants", lambda: empty)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - private API moved
        yield
        return
    with patch:
        cache.cache.clear()
        try:
            yield
        finally:
            cache.cache.clear()
